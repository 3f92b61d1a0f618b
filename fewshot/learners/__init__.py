"""Learners and their registry. Usage: ``learner = build_learner("mamlpp", Conv4(1, 5), {"inner_lr": 0.5})``."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, cast

from torch import nn

from ..errors import ConfigError
from .adapted import AdaptedModel
from .anil import ANIL, ANILConfig
from .base import GradientLearner
from .config import LearnerConfig
from .imaml import IMAML, IMAMLConfig
from .lstm_meta import LSTMMetaConfig, LSTMMetaLearner
from .maml import MAML, MAMLConfig
from .metasgd import MetaSGD, MetaSGDConfig
from .mtnet import MTNet, MTNetConfig
from .reptile import Reptile, ReptileConfig
from .result import MetaOutput, TaskResult

# name -> (learner class, preset config factory taking overrides)
LEARNERS: dict[str, tuple[type, Callable[..., Any]]] = {
    "maml": (MAML, MAMLConfig),
    "fomaml": (MAML, lambda **kw: MAMLConfig(**{"first_order": True, **kw})),
    "mamlpp": (MAML, MAMLConfig.mamlpp),
    "metasgd": (MetaSGD, MetaSGDConfig),
    "mtnet": (MTNet, MTNetConfig),
    "tnet": (MTNet, lambda **kw: MTNetConfig(**{"mask": False, **kw})),
    "lstm-meta": (LSTMMetaLearner, LSTMMetaConfig),
    "anil": (ANIL, ANILConfig),
    "boil": (ANIL, lambda **kw: ANILConfig(**{"part": "body", **kw})),
    "reptile": (Reptile, ReptileConfig),
    "imaml": (IMAML, IMAMLConfig),
    "foimaml": (IMAML, lambda **kw: IMAMLConfig(**{"first_order": True, **kw})),
    "imaml-hf": (IMAML, lambda **kw: IMAMLConfig(**{"inner_solver": "hf", "inner_steps": 5, "inner_lr": 1.0, **kw})),
}

# settings a name implies even when a config instance is given (``build_learner("tnet", m, MTNetConfig())``)
_FORCED: dict[str, dict[str, Any]] = {"fomaml": {"first_order": True}, "tnet": {"mask": False},
                                      "anil": {"part": "head"}, "boil": {"part": "body"},
                                      "foimaml": {"first_order": True}, "imaml-hf": {"inner_solver": "hf"}}


def register_learner(name: str, cls: type, preset: Callable[..., Any]) -> None:
    """Add a learner to the registry. Usage: ``register_learner("metasgd", MetaSGD, MetaSGDConfig)``"""
    LEARNERS[name] = (cls, preset)


def learner_config(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The preset config of learner ``name`` with ``overrides`` applied (unknown keys -> ConfigError)."""
    if name not in LEARNERS:
        raise ConfigError(f"unknown learner {name!r}: choose one of {', '.join(sorted(LEARNERS))}")
    _, preset = LEARNERS[name]
    overrides = dict(overrides or {})
    base = preset()
    known = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown {name} config key(s) {', '.join(unknown)}: "
                          f"valid keys are {', '.join(sorted(known))}")
    return preset(**overrides)


def build_learner(name: str, model: nn.Module, config: Any = None, **kwargs: Any) -> nn.Module:
    """Build learner ``name`` (``maml``, ``fomaml``, ``mamlpp``, ``metasgd``, ``mtnet``, ``tnet``, ``lstm-meta``,
    ``anil``, ``boil``, ``reptile``, ``imaml``, ``foimaml``, ``imaml-hf``, or one ``register_learner`` added: the
    keys of ``LEARNERS``) around ``model``.

    ``config``: None (the name's preset), a dict of overrides on that preset, or a config instance used
    as is (``fomaml`` forces ``first_order=True``, ``tnet`` forces ``mask=False``, ``anil``/``boil``
    force ``part="head"``/``"body"``, ``imaml-hf`` forces ``inner_solver="hf"``).
    Usage: ``build_learner("maml", model, {"inner_steps": 5})``
    """
    if name not in LEARNERS:
        raise ConfigError(f"unknown learner {name!r}: choose one of {', '.join(sorted(LEARNERS))}")
    cls, _ = LEARNERS[name]
    if config is None or isinstance(config, Mapping):
        config = learner_config(name, config)
    elif name in _FORCED and dataclasses.is_dataclass(config):
        # is_dataclass narrows the duck-typed config to "instance or class"; a class still fails in replace, as before
        config = dataclasses.replace(cast(Any, config), **_FORCED[name])
    return cls(model, config, **kwargs)

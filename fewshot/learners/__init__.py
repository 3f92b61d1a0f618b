"""Learners and their registry. Usage: ``learner = build_learner("mamlpp", Conv4(1, 5), {"inner_lr":
0.5})``."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from torch import nn

from ..errors import ConfigError
from . import anil, imaml, lstm_meta, maml, metasgd, mtnet, reptile
from .adapted import AdaptedModel
from .anil import ANIL
from .base import GradientLearner
from .config import (
    ANILConfig,
    IMAMLConfig,
    LearnerConfig,
    LSTMMetaConfig,
    MAMLConfig,
    MetaSGDConfig,
    MTNetConfig,
    ReptileConfig,
)
from .imaml import IMAML
from .lstm_meta import LSTMMetaLearner
from .maml import MAML
from .metasgd import MetaSGD
from .mtnet import MTNet
from .reptile import Reptile
from .result import MetaOutput, TaskResult
from .spec import LearnerSpec
from .task import Objective, TaskSettings, TaskTensors

# name -> its spec; each learner module declares its names (the method and its variants) in SPECS
LEARNERS: dict[str, LearnerSpec] = {
    spec.name: spec for module in (maml, metasgd, mtnet, lstm_meta, anil, reptile, imaml)
    for spec in module.SPECS}


def register_learner(spec: LearnerSpec) -> None:
    """Add a learner to the registry. Usage: ``register_learner(LearnerSpec("mine", MyLearner))``"""
    if not isinstance(spec, LearnerSpec):
        raise ConfigError(f"register_learner takes a LearnerSpec, got {type(spec).__name__}: e.g. "
                          "register_learner(LearnerSpec('mine', MyLearner))")
    LEARNERS[spec.name] = spec


def learner_spec(name: str) -> LearnerSpec:
    """The registry entry of ``name`` (ConfigError naming the known ones if unknown)."""
    if name not in LEARNERS:
        raise ConfigError(f"unknown learner {name!r}: choose one of {', '.join(sorted(LEARNERS))}")
    return LEARNERS[name]


def learner_config(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The config of learner ``name`` with ``overrides`` applied (unknown keys -> ConfigError)."""
    return learner_spec(name).config(overrides)


def build_learner(name: str, model: nn.Module, config: Any = None, **kwargs: Any) -> nn.Module:
    """Build learner ``name`` (a key of ``LEARNERS``: ``maml``, ``fomaml``, ``mamlpp``, ``metasgd``,
    ``mtnet``, ``tnet``, ``lstm-meta``, ``anil``, ``boil``, ``reptile``, ``imaml``, ``foimaml``,
    ``imaml-hf``, or one ``register_learner`` added) around ``model``.

    ``config``: None (the name's config), a dict of overrides on it, or a config instance, to which
    the name's forced settings apply (``fomaml``: ``first_order=True``; ``tnet``: ``mask=False``;
    ``anil`` / ``boil``: ``part="head"`` / ``"body"``; ``imaml-hf``: ``inner_solver="hf"``). Usage:
    ``build_learner("maml", model, {"inner_steps": 5})``
    """
    spec = learner_spec(name)
    if config is None or isinstance(config, Mapping):
        config = spec.config(config)
    elif dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = spec.with_forced(config)
    return spec.cls(model, config, **kwargs)

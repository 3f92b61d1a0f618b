"""What a training run is: ``TrainConfig`` and its typed sections (data, model, learner, optim).

Every section validates itself in ``__post_init__`` (one convention for the whole package), so a
config object that exists is a valid one; changes go through ``fewshot.config.apply_overrides``,
which rebuilds the sections (and so re-validates them).
The learner section holds the learner's own config dataclass (e.g. ``MAMLConfig``), chosen by
``learner.name`` in the ``fewshot.learners.LEARNERS`` registry; its fields are addressed flat:
``learner.inner_lr``.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from ..checks import check_count, check_seed
from ..errors import ConfigError
from ..learners import LEARNERS, learner_config
from ..meta_optimizer import MetaOptimConfig
from ..precision import PRECISIONS
from .typed import check_value, field_types, from_dict, to_dict, unknown_key_error

DATASETS = ("omniglot", "mini-imagenet", "mnist", "fashion-mnist", "sinusoid")


@dataclass
class DataConfig:
    """Where tasks come from: dataset, splits and the N-way K-shot Q-query setting."""

    dataset: str = "omniglot"
    root: str | None = None  # data root; None -> $FEWSHOT_DATA -> ~/.cache/fewshot
    size: int = 28  # image side (omniglot 28, mini-imagenet 84)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    ways: int = 5  # ignored for regression (sinusoid)
    shots: int = 1
    queries: int = 1  # per class (classification) or points per task (regression), meta-training
    eval_queries: int | None = None  # queries at validation/test; None = same as ``queries``

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(
                f"data.dataset '{self.dataset}' is unknown: use one of {', '.join(DATASETS)}")
        for name in ("size", "ways", "shots", "queries"):
            check_count(getattr(self, name), f"data.{name}")
        if self.eval_queries is not None:
            check_count(self.eval_queries, "data.eval_queries (or null)")

    @property
    def test_queries(self) -> int:
        return self.eval_queries if self.eval_queries is not None else self.queries

    @property
    def is_regression(self) -> bool:
        return self.dataset == "sinusoid"


@dataclass
class ModelConfig:
    """The backbone: ``conv4`` (MAML conv net), ``fc`` (MAML fully connected net) or ``mlp``
    (sinusoid)."""

    backbone: Literal["conv4", "fc", "mlp"] = "conv4"
    hidden: int = 64  # conv4 filters
    hidden_sizes: list[int] = field(default_factory=lambda: [40, 40])  # fc / mlp layer widths
    pool: bool = True  # conv4: 2x2 max-pool (False: stride-2 convs as in the Omniglot reference)

    def __post_init__(self) -> None:
        check_count(self.hidden, "model.hidden")
        for width in self.hidden_sizes:
            check_count(width, "each of model.hidden_sizes")


def learner_config_type(name: str) -> type:
    """The config dataclass of learner ``name`` (from the ``fewshot.learners`` registry)."""
    if name not in LEARNERS:
        valid = sorted(LEARNERS)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(valid)}"
        raise ConfigError(f"unknown learner.name '{name}': {hint}")
    return LEARNERS[name].config_class


@dataclass
class LearnerSection:
    """Learner name plus that learner's own typed config (flat in files: ``learner: {name: maml,
    inner_lr: 2.0}``).

    A dict of options is applied on top of the learner's own preset
    (``fewshot.learners.learner_config``: e.g. ``mamlpp`` turns on MSL, LSLR, per-step BN and DA),
    each value type-checked.
    """

    name: str = "maml"
    config: Any = None

    def __post_init__(self) -> None:
        cls = learner_config_type(self.name)
        if self.config is None:
            self.config = learner_config(self.name)
        elif isinstance(self.config, dict):
            types_ = field_types(cls)
            checked = {}
            for key, value in self.config.items():
                if key not in types_:
                    raise unknown_key_error(f"learner.{key}",
                                            [f"learner.{k}" for k in types_] + ["learner.name"])
                checked[key] = check_value(value, types_[key], f"learner.{key}")
            try:
                self.config = learner_config(self.name, checked)
            except ConfigError:
                raise
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"invalid learner setting: {exc}") from exc
        elif not isinstance(self.config, cls):
            raise ConfigError(
                f"learner '{self.name}' needs a {cls.__name__}, got {type(self.config).__name__}")

    def to_dict(self) -> dict:
        return {"name": self.name, **to_dict(self.config)}

    @classmethod
    def from_plain(cls, data: Any) -> LearnerSection:
        if isinstance(data, LearnerSection):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"learner must be a mapping, got {type(data).__name__}")
        data = dict(data)
        name = check_value(data.pop("name", "maml"), str, "learner.name")
        return cls(name, data)

    def key_types(self) -> dict[str, Any]:
        """``{"learner.name": str, "learner.<field>": type, ...}``."""
        return {"learner.name": str,
                **{f"learner.{k}": t for k, t in field_types(type(self.config)).items()}}


_COUNTS = ("iterations", "meta_batch", "iterations_per_epoch", "val_episodes", "eval_episodes",
           "eval_batch",
           "checkpoint_every", "log_every")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved next to the run as ``config.yaml``."""

    preset: str = ""  # name of the preset this came from (informational)
    seed: int = 0
    iterations: int = 60000
    meta_batch: int = 32
    iterations_per_epoch: int = 500  # "epoch" passed to learner.meta_loss (MSL / DA schedules)
    val_every: int = 500  # validate on the fixed validation set every K iterations (0 = never)
    val_episodes: int = 200  # size of the fixed validation episode set
    eval_episodes: int = 600  # test episodes for ``fewshot eval``
    # tasks per batch at validation/test (memory only; results do not depend on it)
    eval_batch: int = 25
    checkpoint_every: int = 500  # write last.pt every K iterations (and at the end)
    log_every: int = 10  # write a train metrics line every K iterations
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # bf16: autocast of the forward passes (fewshot.precision)
    precision: Literal["fp32", "bf16"] = "fp32"
    deterministic: bool = True  # torch.backends.cudnn.deterministic=True, benchmark=False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    learner: LearnerSection = field(default_factory=LearnerSection)
    optim: MetaOptimConfig = field(default_factory=MetaOptimConfig)

    def __post_init__(self) -> None:
        self.learner = LearnerSection.from_plain(self.learner)
        for name in _COUNTS:
            check_count(getattr(self, name), name)
        check_count(self.val_every, "val_every (0 = never)", minimum=0)
        # torch.manual_seed and the episode samplers take a seed in [0, 2**63): refuse others before
        # any build
        check_seed(self.seed, hint=": pass e.g. --seed 0")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device '{self.device}' is unknown: use auto, cpu, cuda or cuda:N")
        check_optim = getattr(self.learner.config, "check_optim", None)
        # a learner whose setting lives in the optim section (Reptile's step size)
        if check_optim is not None:
            check_optim(self.optim)

    def to_dict(self) -> dict:
        """Plain nested dict (JSON/YAML-safe)."""
        out = {f.name: to_dict(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["learner"] = self.learner.to_dict()
        return out

    def key_types(self) -> dict[str, Any]:
        """Every dotted key ``--set`` accepts, with its type."""
        keys: dict[str, Any] = {}
        for name, tp in field_types(TrainConfig).items():
            if name == "learner":
                keys.update(self.learner.key_types())
            elif dataclasses.is_dataclass(tp):
                keys.update(
                    {f"{name}.{k}": t
                     for k, t in field_types(tp).items()})  # type: ignore[arg-type]
            else:
                keys[name] = tp
        return keys

    def all_keys(self) -> list[str]:
        """Every dotted key ``--set`` accepts."""
        return list(self.key_types())


def config_from_dict(data: Any, where: str = "config") -> TrainConfig:
    """Build a TrainConfig from a plain nested dict, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where} must hold a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    if "bf16" in data:  # configs written before precision existed: bf16 true/false
        old = check_value(data.pop("bf16"), bool, "bf16")
        data.setdefault("precision", "bf16" if old else "fp32")
    learner = LearnerSection.from_plain(data.pop("learner", {"name": "maml"}))
    return from_dict(TrainConfig, {**data, "learner": learner})

"""Typed training configuration: dataclass sections, YAML/JSON files, ``--set key.sub=value`` overrides.

Usage::

    cfg = load_config("omniglot-5w1s-maml")                 # a preset name or a .yaml/.json path
    cfg = apply_overrides(cfg, ["learner.inner_lr=0.5", "iterations=200"])
    save_config(cfg, "runs/x/config.yaml")                  # atomic

The learner section holds the learner's own config dataclass (e.g. ``MAMLConfig``), chosen by
``learner.name`` through ``fewshot.learners``; its fields are addressed flat: ``learner.inner_lr``.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from episodes.files import atomic_write_text

from ..errors import ConfigError, FewshotError
from .typed import check_value, field_types, from_dict, to_dict, type_name, unknown_key_error

DATASETS = ("omniglot", "mini-imagenet", "mnist", "fashion-mnist", "sinusoid")


@dataclass
class DataConfig:
    """Where tasks come from: dataset, splits and the N-way K-shot Q-query setting.

    Usage: ``DataConfig(dataset="omniglot", ways=5, shots=1, queries=1)``
    """

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
            raise ConfigError(f"data.dataset '{self.dataset}' is unknown: use one of {', '.join(DATASETS)}")
        for name in ("size", "ways", "shots", "queries"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"data.{name} must be > 0, got {getattr(self, name)}")
        if self.eval_queries is not None and self.eval_queries <= 0:
            raise ConfigError(f"data.eval_queries must be > 0 or null, got {self.eval_queries}")

    @property
    def test_queries(self) -> int:
        return self.eval_queries if self.eval_queries is not None else self.queries

    @property
    def is_regression(self) -> bool:
        return self.dataset == "sinusoid"


@dataclass
class ModelConfig:
    """The backbone: ``conv4`` (MAML conv net), ``fc`` (MAML fully connected net) or ``mlp`` (sinusoid).

    Usage: ``ModelConfig(backbone="conv4", hidden=64, pool=True)``
    """

    backbone: Literal["conv4", "fc", "mlp"] = "conv4"
    hidden: int = 64  # conv4 filters
    hidden_sizes: list[int] = field(default_factory=lambda: [40, 40])  # fc / mlp layer widths
    pool: bool = True  # conv4: 2x2 max-pool (False: stride-2 convs as in the Omniglot reference)

    def __post_init__(self) -> None:
        if self.hidden <= 0 or any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError("model.hidden and model.hidden_sizes must be > 0")


@dataclass
class OptimConfig:
    """Meta-optimizer (Adam), optional cosine annealing, optional gradient clipping.

    Usage: ``OptimConfig(lr=1e-3, cosine=True, min_lr=1e-5, clip_value=10.0)``
    """

    lr: float = 1e-3
    cosine: bool = False  # cosine annealing of the meta LR from lr to min_lr over the run
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    clip_value: float | None = None  # clamp each meta-gradient element to +-clip_value
    clip_norm: float | None = None  # rescale the meta-gradient to this total L2 norm at most

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.min_lr < 0 or self.weight_decay < 0:
            raise ConfigError("optim.lr must be > 0 and optim.min_lr, optim.weight_decay >= 0")
        for name in ("clip_value", "clip_norm"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"optim.{name} must be > 0 or null, got {v}")


def _learner_registry() -> dict:
    from .. import learners

    return learners.LEARNERS


def learner_config_type(name: str) -> type:
    """The config dataclass of learner ``name`` (from the ``fewshot.learners`` registry)."""
    registry = _learner_registry()
    if name not in registry:
        raise unknown_key_error_value("learner.name", name, sorted(registry))
    _, preset = registry[name]
    return type(preset())


def unknown_key_error_value(key: str, value: str, valid: list[str]) -> ConfigError:
    """ConfigError for an unknown value of a name-like setting, with a close-match suggestion."""
    import difflib

    close = difflib.get_close_matches(value, valid, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(valid)}"
    return ConfigError(f"unknown {key} '{value}': {hint}")


@dataclass
class LearnerSection:
    """Learner name plus that learner's own typed config (flat in files: ``learner: {name: maml, inner_lr: 2.0}``).

    A dict of options is applied on top of the learner's own preset (``fewshot.learners.learner_config``:
    e.g. ``mamlpp`` turns on MSL, LSLR, per-step BN and DA), each value type-checked.
    Usage: ``LearnerSection("maml", {"inner_steps": 1, "inner_lr": 2.0})``
    """

    name: str = "maml"
    config: Any = None

    def __post_init__(self) -> None:
        from ..learners import learner_config

        cls = learner_config_type(self.name)
        if self.config is None:
            self.config = learner_config(self.name)
        elif isinstance(self.config, dict):
            types_ = field_types(cls)
            checked = {}
            for key, value in self.config.items():
                if key not in types_:
                    raise unknown_key_error(f"learner.{key}", [f"learner.{k}" for k in types_] + ["learner.name"])
                checked[key] = check_value(value, types_[key], f"learner.{key}")
            self.config = learner_config(self.name, checked)
        elif not isinstance(self.config, cls):
            raise ConfigError(f"learner '{self.name}' needs a {cls.__name__}, got {type(self.config).__name__}")

    def to_dict(self) -> dict:
        return {"name": self.name, **to_dict(self.config)}

    @classmethod
    def from_plain(cls, data: Any) -> "LearnerSection":
        if not isinstance(data, dict):
            raise ConfigError(f"learner must be a mapping, got {type(data).__name__}")
        data = dict(data)
        name = check_value(data.pop("name", "maml"), str, "learner.name")
        return cls(name, data)

    def keys(self) -> list[str]:
        return ["learner.name"] + [f"learner.{k}" for k in field_types(type(self.config))]


@dataclass
class TrainConfig:
    """Everything a training run needs; saved next to the run as ``config.yaml``.

    Usage: ``cfg = TrainConfig(iterations=1000, data=DataConfig(ways=5, shots=1))``
    """

    preset: str = ""  # name of the preset this came from (informational)
    seed: int = 0
    iterations: int = 60000
    meta_batch: int = 32
    iterations_per_epoch: int = 500  # "epoch" passed to learner.meta_loss (MSL / DA schedules)
    val_every: int = 500  # validate on the fixed validation set every K iterations (0 = never)
    val_episodes: int = 200  # size of the fixed validation episode set
    eval_episodes: int = 600  # test episodes for ``fewshot eval``
    eval_batch: int = 25  # tasks per batch at validation/test (memory only; results do not depend on it)
    checkpoint_every: int = 500  # write last.pt every K iterations (and at the end)
    log_every: int = 10  # write a train metrics line every K iterations
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    bf16: bool = False  # bf16 autocast of the forward passes (CUDA only)
    deterministic: bool = True  # torch.backends.cudnn.deterministic=True, benchmark=False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    learner: LearnerSection = field(default_factory=LearnerSection)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        for name in ("iterations", "meta_batch", "iterations_per_epoch", "val_episodes", "eval_episodes",
                     "eval_batch", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.val_every < 0:
            raise ConfigError(f"val_every must be >= 0, got {self.val_every}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device '{self.device}' is unknown: use auto, cpu, cuda or cuda:N")

    def to_dict(self) -> dict:
        """Plain nested dict (JSON/YAML-safe)."""
        out = {f.name: to_dict(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["learner"] = self.learner.to_dict()
        return out

    def all_keys(self) -> list[str]:
        """Every dotted key ``--set`` accepts."""
        keys = []
        for name, tp in field_types(TrainConfig).items():
            if name == "learner":
                keys += self.learner.keys()
            elif dataclasses.is_dataclass(tp):
                keys += [f"{name}.{k}" for k in field_types(tp)]
            else:
                keys.append(name)
        return keys


def config_from_dict(data: dict, where: str = "config") -> TrainConfig:
    """Build a TrainConfig from a plain nested dict, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    learner = LearnerSection.from_plain(data.pop("learner", {"name": "maml"}))
    cfg = from_dict(TrainConfig, data)
    cfg.learner = learner
    return cfg


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write ``cfg`` atomically as YAML (``.yaml``/``.yml``) or JSON (``.json``)."""
    path = Path(path)
    plain = cfg.to_dict()
    if path.suffix == ".json":
        text = json.dumps(plain, indent=2, sort_keys=False) + "\n"
    else:
        text = yaml.safe_dump(plain, sort_keys=False)
    atomic_write_text(path, text, error=FewshotError)
    return path


def read_config_file(path: str | Path) -> TrainConfig:
    """Read a YAML or JSON config file (``yaml.safe_load``: never executes code)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist: check the path") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        msg = str(exc).replace("\n", " ")
        raise ConfigError(f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {msg}") from exc
    return config_from_dict(data or {}, where=str(path))


def load_config(name_or_path: str | Path) -> TrainConfig:
    """A preset by name (see ``fewshot.training.presets``) or a ``.yaml``/``.yml``/``.json`` file."""
    from .presets import PRESETS, get_preset

    text = str(name_or_path)
    if text in PRESETS:
        return get_preset(text)
    if text.endswith((".yaml", ".yml", ".json")) or Path(text).is_file():
        return read_config_file(text)
    return get_preset(text)  # raises the unknown-preset error with a suggestion


def parse_override(item: str) -> tuple[str, str]:
    """Split ``key.sub=value`` into (key, raw value)."""
    if "=" not in item:
        raise ConfigError(f"--set '{item}' is not key=value: write e.g. --set learner.inner_lr=0.5")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set '{item}' has an empty key: write e.g. --set iterations=100")
    return key, raw.strip()


def _parse_raw(raw: str, tp: Any) -> Any:
    if tp is str or type_name(tp) == "str":
        return raw
    if raw.lower() in ("none", "null", "~"):
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """Return a copy of ``cfg`` with ``key.sub=value`` items applied (each key and type checked)."""
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data), model=dataclasses.replace(cfg.model),
                              optim=dataclasses.replace(cfg.optim),
                              learner=LearnerSection(cfg.learner.name, dataclasses.replace(cfg.learner.config)))
    for item in items:
        key, raw = parse_override(item)
        known = cfg.all_keys()
        if key not in known:
            raise unknown_key_error(key, known)
        parts = key.split(".")
        if parts[0] == "learner":
            if parts[1] == "name":  # a new learner starts from its own preset: set its options after
                cfg.learner = LearnerSection(raw)
                continue
            target, attr = cfg.learner.config, parts[1]
            tp = field_types(type(target))[attr]
        elif len(parts) == 2:
            target, attr = getattr(cfg, parts[0]), parts[1]
            tp = field_types(type(target))[attr]
        else:
            target, attr = cfg, parts[0]
            tp = field_types(TrainConfig)[attr]
        value = check_value(_parse_raw(raw, tp), tp, key)
        setattr(target, attr, value)
    # re-run the sections' validation on the final values
    for section in (cfg.data, cfg.model, cfg.optim):
        section.__post_init__()
    try:
        cfg.learner = LearnerSection(cfg.learner.name, dataclasses.replace(cfg.learner.config))
        if hasattr(cfg.learner.config, "__post_init__"):
            cfg.learner.config.__post_init__()
    except FewshotError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid learner setting: {exc}") from exc
    cfg.__post_init__()
    return cfg

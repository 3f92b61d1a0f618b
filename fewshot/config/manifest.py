"""The manifest of a published model (``<model>/manifest.json``): one typed schema for its writers
(``fewshot.reporting.publish``, ``fewshot.pretrained.learned_optimizers``) and its readers
(``fewshot.pretrained``, the l2o loader, ``--from-pretrained``), with every default in one place.

A manifest is a JSON object.  The fields the loaders and ``fewshot pretrained`` rely on are typed
here (checked by ``config.typed``, as every config is); any other key (a learned optimizer's
``extra`` provenance, fields of later versions) is kept as it is, and keys keep their order, so
reading and writing a manifest changes nothing.  Fields added over time are optional: older shipped
manifests lack ``preprocessing`` (their dataset's store preprocessing applies), ``test_steps``,
``training_state``, ``validation_curve``...  ``Manifest`` reads like the JSON object too
(``m["mean"]``, ``m.get(...)``), for code written against the plain dict (a read-only ``Mapping``:
``dict(m)``, ``{**m}``); ``.get`` of a typed field gives its default when the file lacks it;
``json.dumps(m.to_dict())`` writes it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Iterator, Literal, Mapping

from ..checks import is_finite_number
from ..errors import CheckpointError, ConfigError
from .typed import field_types, from_dict

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
META_INITIALIZATION: Final = "meta-initialization"
LEARNED_OPTIMIZER: Final = "learned-optimizer"
DISTILLED_DATA: Final = "distilled-data"
FIX = "re-publish the model (or remove its folder from the search path)"


@dataclass
class Manifest(Mapping[str, Any]):
    """A published model's manifest (see the module docstring; docs/pretrained.md lists what each
    field means)."""

    sha256: str | None = None  # the weights' checksum (required: checked in __post_init__)
    name: str | None = None  # the model's name (default: its folder's)
    kind: Literal["meta-initialization", "learned-optimizer",
                  "distilled-data"] = META_INITIALIZATION
    weights: str = WEIGHTS  # the weights' file name inside the model folder
    # --- what it is and how it was measured (meta-initializations) ---
    learner: str | None = None
    backbone: str | None = None
    preset: str | None = None
    dataset: str | None = None
    train_split: str | None = None
    split: str | None = None
    # the split family its numbers are on (episodes.split_protocol)
    split_protocol: str | None = None
    ways: int | None = None
    shots: int | None = None
    queries: int | None = None
    metric: str = "accuracy"
    mean: float | None = None
    ci95: float | None = None
    episodes: int | None = None
    eval_seed: int | None = None
    eval_steps: int | None = None
    test_steps: int | None = None  # the default eval steps, chosen on the validation episodes
    val_by_steps: dict[str, Any] | None = None
    val_episodes: int | None = None
    val_seed: int | None = None
    bn_mode: str | None = None
    transductive: dict[str, Any] | None = None
    non_transductive: dict[str, Any] | None = None
    # --- its training ---
    checkpoint_iteration: int | None = None
    selection: dict[str, Any] | None = None  # why these weights (fewshot.reporting.selection)
    full_protocol: bool | None = None  # trained the preset's whole recipe, unchanged
    trained_iterations: int | None = None
    train_iterations: int | None = None
    preset_iterations: int | None = None
    seed: int | None = None
    hardware: str | None = None
    created: str | None = None
    paper: str | None = None
    notes: str = ""
    protocol_changes: str | None = None
    training_budget: str | None = None
    training_time: dict[str, Any] | None = None
    validation_curve: list[dict[str, Any]] | None = None
    # an unfinished run (trained fewer iterations than its config's): how many are left and the
    # validation metric its curve forecasts at its end (fewshot.reporting.forecast)
    remaining_iterations: int | None = None
    forecast: dict[str, Any] | None = None
    # what --from-pretrained continues (fewshot.pretrained.training_state)
    training_state: dict[str, Any] | None = None
    training_state_note: str | None = None  # why there is none
    config: dict[str, Any] | None = None  # the training config (required for a meta-initialization)
    preprocessing: dict[str, Any] | None = None  # episodes.Preprocessing.to_dict()
    # --- learned optimizers ---
    # the LSTM optimizer's config (required for a learned optimizer)
    net: dict[str, Any] | None = None
    extras: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _keys: list[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("name", "weights", "sha256"):
            if getattr(self, key) == "":
                raise ConfigError(f"'{key}' must be a non-empty string")
        if Path(self.weights).name != self.weights or self.weights in (".", ".."):
            raise ConfigError(
                f"'weights' must be a file name inside the model folder, got {self.weights!r}")
        if self.sha256 is None:
            raise ConfigError("lacks 'sha256' (the weights' checksum)")
        if self.test_steps is not None and self.test_steps < 1:
            raise ConfigError(f"'test_steps' must be a positive integer, got {self.test_steps!r}")
        if self.kind == META_INITIALIZATION:
            if self.config is None:
                raise ConfigError("lacks 'config' (the training config, a JSON object)")
            for key, what in (("mean", "the measured accuracy or MSE"),
                              ("ci95", "its 95% confidence interval")):
                value = getattr(self, key)
                if value is None:
                    raise ConfigError(f"lacks '{key}' ({what}, a number)")
                if not is_finite_number(value):
                    raise ConfigError(f"'{key}' must be a finite number, got {value!r}")
        elif self.kind == DISTILLED_DATA:
            if self.config is None:
                raise ConfigError("lacks 'config' (the distillation config, a JSON object)")
        elif self.net is None:
            raise ConfigError("lacks 'net' (the learned optimizer's config, a JSON object)")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """The manifest of a parsed ``manifest.json``; ConfigError (one line, no fix) for a field
        that is wrong."""
        typed = field_types(cls)
        try:
            manifest = from_dict(cls, {k: v for k, v in data.items() if k in typed})
        except ConfigError as exc:
            raise ConfigError(str(exc).removesuffix(": fix the value")) from None
        manifest.extras = {k: v for k, v in data.items() if k not in typed}
        manifest._keys = list(data)
        return manifest

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the keys it was read with, in their order (all typed fields when built
        in code)."""
        typed = field_types(type(self))
        keys = self._keys if self._keys is not None else [*typed, *self.extras]
        return {k: _plain(getattr(self, k)) if k in typed else self.extras[k] for k in keys}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def __getitem__(self, key: str) -> Any:
        plain = self.to_dict()
        if key not in plain:
            raise KeyError(key)
        return plain[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def get(self, key: str, default: Any = None) -> Any:
        """A field's value (its default when the file lacks it) or another key's, else
        ``default``."""
        if key in field_types(type(self)):
            value = getattr(self, key)
            return default if value is None else value
        return self.extras.get(key, default)


def _plain(value: Any) -> Any:
    is_instance = dataclasses.is_dataclass(value) and not isinstance(value, type)
    return dataclasses.asdict(value) if is_instance else value


def manifest_of(data: dict[str, Any], where: str) -> Manifest:
    """``Manifest.from_json(data)`` with its error as a CheckpointError naming ``where`` (a file, a
    model)."""
    try:
        return Manifest.from_json(data)
    except ConfigError as exc:
        raise CheckpointError(f"pretrained manifest {where}: {exc}: {FIX}") from None


def read_manifest(model_dir: Path) -> Manifest:
    """The parsed, checked ``manifest.json`` of a model directory (one-line CheckpointError if it is
    not usable)."""
    path = Path(model_dir) / MANIFEST
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CheckpointError(
            f"pretrained manifest {path} cannot be read ({exc.strerror or exc}): {FIX}") from exc
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"pretrained manifest {path} is not UTF-8 text (bad byte at offset {exc.start}): "
            f"{FIX}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"pretrained manifest {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}): {FIX}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"pretrained manifest {path} is not a JSON object: {FIX}")
    return manifest_of(data, str(path))

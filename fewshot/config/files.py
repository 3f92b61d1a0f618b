"""Config files and command-line overrides: YAML/JSON in and out, preset-or-path loading, ``--set``.

Files are read with ``yaml.safe_load``/``json`` (never executes code) and written atomically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from episodes.files import atomic_write_text

from ..errors import ConfigError, FewshotError
from . import typed
from .presets import PRESETS, get_preset
from .schema import LearnerSection, TrainConfig, config_from_dict


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
    """Read a YAML or JSON config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist: check the path") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}): "
                          "save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        msg = str(exc).replace("\n", " ")
        raise ConfigError(f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                          f"{msg}") from exc
    return config_from_dict(data or {}, where=str(path))


def load_config(name_or_path: str | Path) -> TrainConfig:
    """A preset by name (``fewshot.config.presets``) or a ``.yaml``/``.yml``/``.json`` file."""
    text = str(name_or_path)
    if text in PRESETS:
        return get_preset(text)
    if text.endswith((".yaml", ".yml", ".json")) or Path(text).is_file():
        return read_config_file(text)
    return get_preset(text)  # raises the unknown-preset error with a suggestion


def _switch_learner(plain: dict, key: str, raw: str) -> bool:
    """``learner.name=X`` starts from learner X's own preset; options set after it apply on top."""
    if key != "learner.name":
        return False
    LearnerSection(raw)  # unknown name -> ConfigError with a suggestion
    plain["learner"] = {"name": raw}
    return True


def _key_types(plain: dict) -> dict[str, Any]:
    learner = LearnerSection.from_plain(plain.get("learner", {"name": "maml"}))
    return TrainConfig(learner=learner).key_types()


def apply_overrides(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """A copy of ``cfg`` with ``key.sub=value`` items applied (each key and type checked, then validated)."""
    return typed.apply_overrides(cfg, items, key_types=_key_types, special=_switch_learner,
                                 rebuild=lambda plain: config_from_dict(plain))

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
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start} is "
            f"{exc.object[exc.start]:#04x}): "
            "save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(path, exc)) from exc
    try:
        return config_from_dict(data or {}, where=str(path))
    except ConfigError as exc:
        line = None if path.suffix == ".json" else _line_of_key(text, str(exc).split(" ", 1)[0])
        if line is None:
            raise
        hint = ""
        if " must be a mapping, got str" in str(exc):
            hint = (
                "; a line under it lacks its colon: every setting is `key: value` (a colon and a "
                "space), "
                "indented under its section")
        raise ConfigError(f"config file {path}, line {line}: {exc}{hint}") from exc


def _yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: the file, the line, PyYAML's problem, and the usual
    cause."""
    mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return f"config file {path} is not valid YAML: {str(exc).replace(chr(10), ' ')}"
    hint = (": every setting is `key: value` (a colon and a space); add the missing colon"
            if "expected ':'" in problem else ": fix the line")
    return f"config file {path}, line {mark.line + 1}: not valid YAML ({problem}){hint}"


def _line_of_key(text: str, dotted: str) -> int | None:
    """1-based line of the value of ``dotted`` (``learner.inner_lr``) in a YAML text, or None."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        if node is None:
            return None
    return node.start_mark.line + 1


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
    """A copy of ``cfg`` with ``key.sub=value`` items applied (each key and type checked, then
    validated)."""
    return typed.apply_overrides(cfg, items, key_types=_key_types, special=_switch_learner,
                                 rebuild=lambda plain: config_from_dict(plain))

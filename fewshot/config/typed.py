"""Typed dataclass <-> plain-dict conversion with type checking, and ``key.sub=value`` overrides.

The engine under every config of the package: ``from_dict`` builds a dataclass tree from plain data
(every key and type checked, one-line errors with "did you mean" hints), ``to_dict`` goes back, and
``apply_overrides`` is the one override mechanism (``fewshot train --set``, ``fewshot l2o train
--set``).
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Callable, Literal, TypeVar, Union, get_args, get_origin

import yaml

from ..errors import ConfigError

_NONE_TYPE = type(None)


def type_name(tp: Any) -> str:
    """Human name of a type annotation, e.g. ``int``, ``float or None``, ``one of 'a', 'b'``."""
    origin = get_origin(tp)
    if tp is Any:
        return "any value"
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = type_name(args[0]) if args else "value"
        return f"list of {inner}"
    if origin is dict:
        return "mapping"
    if tp is _NONE_TYPE:
        return "None"
    return getattr(tp, "__name__", str(tp))


def check_value(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to annotation ``tp`` (int -> float widening, list -> tuple), or
    raise ConfigError."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and _NONE_TYPE in args:
            return None
        for arg in args:
            if arg is _NONE_TYPE:
                continue
            try:
                return check_value(value, arg, key)
            except ConfigError:
                continue
        raise _wrong_type(key, value, tp)
    if origin is Literal:
        if value in get_args(tp) and type(value) is type(get_args(tp)[0]):
            return value
        raise _wrong_type(key, value, tp)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _wrong_type(key, value, tp)
        item_types = [a for a in get_args(tp) if a is not Ellipsis]
        inner = item_types[0] if item_types else Any
        checked = [check_value(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(checked) if origin is tuple else checked
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong_type(key, value, tp)
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _wrong_type(key, value, tp)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _wrong_type(key, value, tp)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _wrong_type(key, value, tp)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _wrong_type(key, value, tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return from_dict(tp, value, prefix=key)
        raise _wrong_type(key, value, tp)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _wrong_type(key, value, tp)


def _wrong_type(key: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(
        f"{key} must be {type_name(tp)}, got {value!r} ({type(value).__name__}): fix the value")


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields (works with ``from __future__ import
    annotations``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a plain dict, checking every key and type (missing keys keep
    defaults)."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{prefix or 'config'} must be a mapping, got {type(data).__name__}: fix the file")
    types_ = field_types(cls)
    unknown = [k for k in data if k not in types_]
    if unknown:
        raise unknown_key_error(_join(prefix, unknown[0]), [_join(prefix, k) for k in types_])
    kwargs = {k: check_value(v, types_[k], _join(prefix, k)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid {prefix or 'config'}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Plain (JSON/YAML-safe) form of a dataclass tree: tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):
            return obj.to_dict()
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def unknown_key_error(key: str, known: list[str]) -> ConfigError:
    """ConfigError for an unknown key with a close-match suggestion."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:  # also try matching only the last component
        last = key.rsplit(".", 1)[-1]
        lasts = difflib.get_close_matches(last, [x.rsplit(".", 1)[-1] for x in known], n=1)
        close = [k for k in known if k.rsplit(".", 1)[-1] in lasts]
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(known))}"
    return ConfigError(f"unknown config key '{key}': {hint}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


T = TypeVar("T")


def dotted_types(cls: type, prefix: str = "") -> dict[str, Any]:
    """``{"a": int, "sub.b": float, ...}``: the leaf fields of a dataclass tree, by dotted key."""
    out: dict[str, Any] = {}
    for name, tp in field_types(cls).items():
        key = _join(prefix, name)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            out.update(dotted_types(tp, key))
        else:
            out[key] = tp
    return out


def parse_override(item: str) -> tuple[str, str]:
    """Split ``key.sub=value`` into (key, raw value)."""
    if "=" not in item:
        raise ConfigError(f"--set '{item}' is not key=value: write e.g. --set learner.inner_lr=0.5")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set '{item}' has an empty key: write e.g. --set iterations=100")
    return key, raw.strip()


def parse_raw(raw: str, tp: Any) -> Any:
    """The value of a command-line string for annotation ``tp`` (YAML syntax; strings stay as
    written)."""
    if tp is str:
        return raw
    if raw.lower() in ("none", "null", "~"):
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(obj: T, items: list[str], *,
                    key_types: Callable[[dict], dict[str, Any]] | None = None,
                    rebuild: Callable[[dict], T] | None = None,
                    special: Callable[[dict, str, str], bool] | None = None) -> T:
    """A new ``obj`` with ``key.sub=value`` items applied; ``obj`` is untouched.

    Each key is checked against ``key_types(plain)`` (default: the dataclass tree's leaf fields) and
    each value against its type; the result is rebuilt from the changed plain dict with ``rebuild``
    (default: :func:`from_dict` of ``type(obj)``), so every section validates the final values
    (intermediate combinations are never checked). ``special(plain, key, raw)`` may handle a key
    itself and return True (e.g. a learner switch that resets that learner's options).
    """
    plain = to_dict(obj)
    types_of = key_types or (lambda _plain: dotted_types(type(obj)))
    for item in items:
        key, raw = parse_override(item)
        known = types_of(plain)
        if key not in known:
            raise unknown_key_error(key, list(known))
        if special is not None and special(plain, key, raw):
            continue
        value = check_value(parse_raw(raw, known[key]), known[key], key)
        node = plain
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = to_dict(value)
    if rebuild is not None:
        return rebuild(plain)
    return from_dict(type(obj), plain)

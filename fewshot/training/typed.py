"""Typed dataclass <-> plain-dict conversion with type checking (the engine under the configs).

Usage::

    cfg = from_dict(MyConfig, {"lr": 0.1, "data": {"ways": 5}}, where="config.yaml")
    plain = to_dict(cfg)                      # JSON/YAML-safe dict
    value = check_value(0.1, float, "optim.lr")
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

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
    """Return ``value`` converted to annotation ``tp`` (int -> float widening, list -> tuple), or raise ConfigError."""
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
        args = [a for a in get_args(tp) if a is not Ellipsis]
        inner = args[0] if args else Any
        items = [check_value(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
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
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return from_dict(tp, value, prefix=key)
        raise _wrong_type(key, value, tp)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _wrong_type(key, value, tp)


def _wrong_type(key: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(f"{key} must be {type_name(tp)}, got {value!r} ({type(value).__name__}): fix the value")


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields (works with ``from __future__ import annotations``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a plain dict, checking every key and type (missing keys keep defaults)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}: fix the file")
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
    import difflib

    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:  # also try matching only the last component
        last = key.rsplit(".", 1)[-1]
        close = [k for k in known if k.rsplit(".", 1)[-1] in difflib.get_close_matches(last, [x.rsplit(".", 1)[-1] for x in known], n=1)]
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(known))}"
    return ConfigError(f"unknown config key '{key}': {hint}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key

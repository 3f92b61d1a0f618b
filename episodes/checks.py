"""The one positive-integer check of the project (episodes and fewshot): counts such as ways, shots,
batch sizes, steps and iterations. ``fewshot.checks.check_count`` is this check raising
ConfigError."""
from __future__ import annotations

from typing import Any

from .errors import DataError


def check_positive(name: str, value: Any, minimum: int = 1, *,
                   error: type[Exception] = DataError) -> int:
    """Return ``value`` if it is an int >= ``minimum`` (bools refused), else raise a one-line
    ``error``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(
            f"{name} must be an integer, got {value!r}: pass a whole number such as "
            f"{name}={max(minimum, 1)}")
    if value < minimum:
        raise error(f"{name} must be >= {minimum}, got {value}: pass {name}={minimum} or more")
    return value

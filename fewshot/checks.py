"""The one positive-integer check of the package (counts: steps, iterations, episodes, widths, ...)."""
from __future__ import annotations

from typing import Any

from .errors import ConfigError


def check_count(value: Any, what: str, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum`` (bools refused), else a one-line ConfigError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value

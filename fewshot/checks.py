"""The positive-integer check of the learning side: ``episodes.checks.check_positive`` raising ConfigError
(one implementation for the whole project)."""
from __future__ import annotations

from typing import Any

from episodes.checks import check_positive

from .errors import ConfigError


def check_count(value: Any, what: str, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum`` (bools refused), else a one-line ConfigError naming ``what``."""
    return check_positive(what, value, minimum, error=ConfigError)

"""The argument checks of the learning side, one implementation each, raising ConfigError: counts
(``check_count``: ``episodes.checks.check_positive``, the project's one positive-integer check),
real numbers (``is_finite_number`` / ``check_number``), ``(low, high)`` ranges and seeds.

Every config and rule validates its numbers through these, so a bool, a string, ``inf`` or ``nan``
is refused the same way everywhere, with one line saying what is wrong and how to fix it.
"""
from __future__ import annotations

import math
from typing import Any

from episodes.checks import check_positive

from .errors import ConfigError

SEED_LIMIT = 2**63  # torch.manual_seed and the episode samplers take a seed in [0, 2**63)


def check_count(value: Any, what: str, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum`` (bools refused), else a one-line ConfigError naming
    ``what``."""
    return check_positive(what, value, minimum, error=ConfigError)


def is_finite_number(value: object) -> bool:
    """True for a finite ``int``/``float`` (bools, strings, ``inf`` and ``nan`` are not numbers
    here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bounds(above: float | None, at_least: float | None, below: float | None,
            at_most: float | None) -> str:
    """The allowed range in words: `` > 0``, `` >= 0``, `` in [0, 1)``, or "" when unbounded."""
    low = ("[", at_least) if at_least is not None else ("(", above) if above is not None else None
    high = (at_most, "]") if at_most is not None else (below, ")") if below is not None else None
    if low and high:
        return f" in {low[0]}{low[1]}, {high[0]}{high[1]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f" {'<=' if high[1] == ']' else '<'} {high[0]}"
    return ""


def check_number(value: Any, what: str, *, above: float | None = None,
                 at_least: float | None = None,
                 below: float | None = None, at_most: float | None = None, note: str = "",
                 hint: str = "") -> float:
    """``float(value)`` if ``value`` is a finite number within the given bounds (``above``/``below``
    strict, ``at_least``/``at_most`` inclusive), else a one-line ConfigError: ``<what> must be a
    finite number <range><note>, got <value><hint>``.  Usage: ``lr = check_number(lr, "inner_lr",
    at_least=0)``"""
    ok = is_finite_number(value) and (above is None or value > above) and (at_least is None or value
                                                                           >= at_least) \
        and (below is None or value < below) and (at_most is None or value <= at_most)
    if not ok:
        raise ConfigError(
            f"{what} must be a finite number{_bounds(above, at_least, below, at_most)}{note}, "
            f"got {value!r}{hint}")
    return float(value)


def check_interval(value: Any, what: str, *, hint: str = "") -> tuple[float, float]:
    """``(low, high)`` as floats if ``value`` is a pair of finite numbers with ``low <= high``, else
    a one-line ConfigError.  Usage: ``low, high = check_interval(alpha_init, "alpha_init")``"""
    pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(is_finite_number(v) for v in pair) or pair[0] > pair[1]:
        raise ConfigError(
            f"{what} must be two finite numbers (low, high) with low <= high, got {value!r}{hint}")
    return float(pair[0]), float(pair[1])


def check_seed(value: Any, what: str = "seed", *, hint: str = "") -> int:
    """``value`` if it is an integer in ``[0, 2**63)`` (what torch and the samplers accept), else a
    one-line ConfigError.  Usage: ``check_seed(cfg.seed, hint=": pass e.g. --seed 0")``"""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise ConfigError(f"{what} must be an integer in [0, 2**63), got {value!r}{hint}")
    return value

"""The learning side's argument checks: what counts as a number, the range in words, one-line
errors."""
import math

import pytest

from fewshot.checks import check_count, check_interval, check_number, check_seed, is_finite_number
from fewshot.errors import ConfigError


@pytest.mark.parametrize("value, ok",
                         [(0, True), (-2.5, True), (1e300, True), (True, False), (math.inf, False),
                                       (-math.inf, False), (math.nan, False), ("1", False),
                                       (None, False)])
def test_what_counts_as_a_finite_number(value, ok):
    assert is_finite_number(value) is ok


def test_check_number_bounds_and_messages():
    assert check_number(3, "x", above=0) == 3.0 and isinstance(check_number(3, "x"), float)
    assert check_number(0, "x", at_least=0, below=1) == 0.0
    cases = [(dict(above=0), 0, "x must be a finite number > 0, got 0"),
             (dict(at_least=0), -1, "x must be a finite number >= 0, got -1"),
             (dict(at_least=0, below=1), 1, r"x must be a finite number in \[0, 1\), got 1"),
             (dict(above=0, at_most=1), 2, r"x must be a finite number in \(0, 1\], got 2"),
             (dict(below=5), 5, "x must be a finite number < 5, got 5"),
             (dict(at_most=5), True, "x must be a finite number <= 5, got True"),
             ({}, math.nan, "x must be a finite number, got nan")]
    for bounds, value, message in cases:
        with pytest.raises(ConfigError, match=f"^{message}$"):
            check_number(value, "x", **bounds)
    with pytest.raises(ConfigError,
                       match=r"^lr must be a finite number > 0 \(a note\), got inf: e.g. lr=1$"):
        check_number(math.inf, "lr", above=0, note=" (a note)", hint=": e.g. lr=1")


def test_check_interval_seed_and_count():
    assert check_interval([1, 2], "r") == (1.0, 2.0) and check_interval((3, 3), "r") == (3.0, 3.0)
    for bad in [(2, 1), (1,), (1, math.inf), (True, 2), "ab", 5]:
        with pytest.raises(ConfigError,
                           match=r"^r must be two finite numbers \(low, high\) with low <= high, "
                                 r"got "):
            check_interval(bad, "r")
    assert check_seed(0) == 0 and check_seed(2**63 - 1) == 2**63 - 1
    for bad in [-1, 2**63, True, 1.0]:
        with pytest.raises(ConfigError,
                           match=r"^seed must be an integer in \[0, 2\*\*63\), got .*: pass 0$"):
            check_seed(bad, hint=": pass 0")
    with pytest.raises(ConfigError, match="^ways must be >= 2, got 1: pass ways=2 or more$"):
        check_count(1, "ways", minimum=2)

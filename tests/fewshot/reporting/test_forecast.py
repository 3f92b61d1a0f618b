"""The learning-curve forecast of an unfinished run: the power-law fit against closed forms."""
from __future__ import annotations

import math

import pytest

from fewshot.reporting.forecast import forecast_curve


def _power_curve(a: float, b: float, iterations: list[int]) -> list[dict]:
    return [{"iteration": i, "accuracy": 1.0 - a * i ** b, "ci95": 0.01} for i in iterations]


def test_an_exact_power_law_is_extrapolated_exactly():
    curve = _power_curve(0.9, -0.45, list(range(500, 5001, 500)))
    f = forecast_curve(curve, 60_000)
    assert f is not None
    assert f["accuracy"] == pytest.approx(1.0 - 0.9 * 60_000 ** -0.45, abs=1e-12)
    assert f["exponent"] == pytest.approx(-0.45, abs=1e-12)
    # the later half only: iterations 2500..5000
    assert f["fitted_iterations"] == [2500, 5000] and f["points"] == 6


def test_the_early_half_does_not_move_the_forecast():
    later = _power_curve(0.9, -0.45, [3000, 4000, 5000, 6000])
    early = [{"iteration": 100, "accuracy": 0.2}, {"iteration": 1000, "accuracy": 0.5}]
    assert forecast_curve(early + later, 60_000) == forecast_curve(later, 60_000)


def test_an_mse_curve_is_fitted_on_the_metric_itself():
    curve = [{"iteration": i, "mse": 2.0 * i ** -0.3} for i in (1000, 2000, 3000, 4000)]
    f = forecast_curve(curve, 10_000, metric="mse")
    assert f is not None and f["mse"] == pytest.approx(2.0 * 10_000 ** -0.3, rel=1e-12)


def test_a_flat_curve_forecasts_its_level():
    curve = [{"iteration": i, "accuracy": 0.75} for i in (2000, 3000, 4000)]
    f = forecast_curve(curve, 60_000)
    assert f is not None
    assert f["accuracy"] == pytest.approx(0.75, abs=1e-12) and f["exponent"] == pytest.approx(0.0)


def test_too_few_points_give_no_forecast():
    assert forecast_curve([], 100) is None
    # two points in the later half, however many before it
    curve = _power_curve(0.9, -0.5, [100, 200, 300, 2000, 4000])
    assert forecast_curve(curve, 60_000) is None
    # a perfect score has no error to take the log of: left out
    perfect = [{"iteration": i, "accuracy": 1.0} for i in (2000, 3000, 4000)]
    assert forecast_curve(perfect, 60_000) is None


def test_a_non_positive_target_is_refused():
    with pytest.raises(ValueError, match="positive iteration"):
        forecast_curve(_power_curve(0.9, -0.5, [1000, 2000, 3000]), 0)


def test_the_forecast_is_finite_for_a_noisy_curve():
    curve = [{"iteration": i, "accuracy": 0.9 + 0.01 * math.sin(i)} for i in range(1000, 6001, 500)]
    f = forecast_curve(curve, 60_000)
    assert f is not None and math.isfinite(f["accuracy"])

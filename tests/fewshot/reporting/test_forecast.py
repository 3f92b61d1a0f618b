"""The learning-curve forecast of an unfinished run: the power-law fit against closed forms."""
from __future__ import annotations

import math
import random
from statistics import NormalDist

import pytest

from fewshot.reporting.forecast import forecast_curve, student_t_quantile


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


def test_the_t_quantile_matches_its_closed_forms():
    # one degree of freedom is the Cauchy distribution, two has an algebraic quantile, and many
    # approach the normal
    for p in (0.6, 0.9, 0.975, 0.995):
        assert student_t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
        assert student_t_quantile(p, 2) == pytest.approx(
            (2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
        assert student_t_quantile(1 - p, 2) == pytest.approx(-student_t_quantile(p, 2))
        assert student_t_quantile(p, 10**6) == pytest.approx(NormalDist().inv_cdf(p), abs=1e-5)
    with pytest.raises(ValueError, match="0 < p < 1"):
        student_t_quantile(1.0, 3)


def test_an_exact_power_law_has_an_interval_of_zero_width():
    f = forecast_curve(_power_curve(0.9, -0.45, list(range(500, 5001, 500))), 60_000)
    assert f is not None
    assert f["low"] == pytest.approx(f["accuracy"], abs=1e-9)
    assert f["high"] == pytest.approx(f["accuracy"], abs=1e-9)


def test_the_prediction_interval_covers_a_new_measurement_95_percent_of_the_time():
    # a power law with log-normal noise on the error: the 95% interval of a fit on 8 noisy points
    # must hold a fresh noisy measurement at the target in about 95% of 1000 draws
    rng = random.Random(0)
    a, b, sigma, until = 0.9, -0.45, 0.05, 60_000
    covered = 0
    for _ in range(1000):
        curve = [{"iteration": i, "accuracy": 1.0 - a * i ** b * math.exp(rng.gauss(0, sigma))}
                 for i in range(5000, 10_001, 700)]
        f = forecast_curve(curve, until)
        assert f is not None and f["low"] < f["accuracy"] < f["high"]
        measured = 1.0 - a * until ** b * math.exp(rng.gauss(0, sigma))
        covered += f["low"] <= measured <= f["high"]
    # binomial standard deviation at 95% over 1000 draws: 0.7 points
    assert 0.93 <= covered / 1000 <= 0.97

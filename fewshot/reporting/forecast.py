"""Where an unfinished run's validation curve is heading: the forecast a published, still-running
model's manifest carries (``remaining_iterations``, ``forecast``).

A learning curve's error falls roughly as a power of the iterations trained (Hestness et al.
2017; Domhan et al. 2015 count it among their curve models), so a straight line through
``log(error)`` against ``log(iteration)`` over the curve's later half extrapolates it to the run's
last iteration.  The earlier half is left out because the first few hundred iterations fall faster
than any power law the rest follows.  It is a guide, not a promise: the fit knows neither the
learning-rate schedule (a cosine-annealed rate gains most near its end) nor the error floor a model
cannot go below.

Beside the value goes the fit's 95% prediction interval (``low``, ``high``): the ordinary
least-squares interval for a new measurement at ``until``, from the scatter of the fitted points
about the line and a Student-t quantile with ``points - 2`` degrees of freedom.  It measures the
curve's noise only; a curve that bends away from a power law can end outside it.

``forecast_curve(curve, until=60_000)``
-> ``{"iteration": 60000, "metric": "accuracy", "accuracy": 0.93, "low": 0.92, "high": 0.94, ...}``.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from ..errors import FewshotError

FIT = "power law in the error (log error linear in log iteration), least squares"
MIN_POINTS = 3


def forecast_curve(curve: list[dict[str, Any]], until: int, *,
                   metric: str = "accuracy") -> dict[str, Any] | None:
    """The validation ``metric`` the curve ``[{"iteration", metric, ...}]`` reaches at iteration
    ``until`` by the power-law fit on its later half (iterations >= half the last one):
    ``{"iteration": until, "metric": metric, metric: value, "low": l, "high": h, "fit": FIT,
    "fitted_iterations": [first, last], "points": n, "exponent": b}``, the error going as
    iteration ** b (b < 0 while it improves) and [l, h] the 95% prediction interval of the metric.
    ``metric`` "accuracy" fits the error 1 - accuracy; any other (an MSE) fits the metric itself.
    None when fewer than three usable points (positive iteration, error in (0, inf)) remain."""
    if until < 1:
        raise FewshotError(f"until must be a positive iteration, got {until}")
    points = []
    for p in curve:
        value, iteration = p.get(metric), p.get("iteration")
        if not isinstance(value, (int, float)) or not isinstance(iteration, (int, float)):
            continue
        error = 1.0 - float(value) if metric == "accuracy" else float(value)
        if iteration > 0 and 0.0 < error < math.inf:
            points.append((float(iteration), error))
    if not points:
        return None
    points.sort()
    last = points[-1][0]
    later = [(i, e) for i, e in points if i >= last / 2]
    if len(later) < MIN_POINTS:
        return None
    xs = [math.log(i) for i, _ in later]
    ys = [math.log(e) for _, e in later]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0.0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    n = len(later)
    x0 = math.log(until)
    y0 = my + slope * (x0 - mx)
    residual_var = sum((y - my - slope * (x - mx)) ** 2 for x, y in zip(xs, ys)) / (n - 2)
    half_width = (student_t_quantile(0.975, n - 2)
                  * math.sqrt(residual_var * (1.0 + 1.0 / n + (x0 - mx) ** 2 / sxx)))
    error, error_low, error_high = (math.exp(y0), math.exp(y0 - half_width),
                                    math.exp(y0 + half_width))
    if metric == "accuracy":
        value, low, high = 1.0 - error, max(0.0, 1.0 - error_high), 1.0 - error_low
    else:
        value, low, high = error, error_low, error_high
    return {"iteration": int(until), "metric": metric, metric: value, "low": low, "high": high,
            "fit": FIT, "fitted_iterations": [int(later[0][0]), int(later[-1][0])],
            "points": n, "exponent": slope}


@lru_cache(maxsize=64)
def student_t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile (0 < p < 1) of Student's t distribution with ``dof`` degrees of freedom:
    bisection on its distribution function, integrated from the density by Simpson's rule (the
    standard library has no incomplete beta function, and the forecast needs no SciPy)."""
    if not 0.0 < p < 1.0 or dof < 1:
        raise FewshotError(f"student_t_quantile needs 0 < p < 1 and dof >= 1, got p={p}, "
                           f"dof={dof}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, dof)
    log_norm = (math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2)
                - 0.5 * math.log(dof * math.pi))

    def density(t: float) -> float:
        return math.exp(log_norm - (dof + 1) / 2 * math.log1p(t * t / dof))

    def cdf(t: float, intervals: int = 2000) -> float:
        h = t / intervals
        inner = sum((4 if k % 2 else 2) * density(k * h) for k in range(1, intervals))
        return 0.5 + h / 3 * (density(0.0) + inner + density(t))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2

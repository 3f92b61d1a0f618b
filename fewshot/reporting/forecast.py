"""Where an unfinished run's validation curve is heading: the forecast a published, still-running
model's manifest carries (``remaining_iterations``, ``forecast``).

A learning curve's error falls roughly as a power of the iterations trained (Hestness et al.
2017; Domhan et al. 2015 count it among their curve models), so a straight line through
``log(error)`` against ``log(iteration)`` over the curve's later half extrapolates it to the run's
last iteration.  The earlier half is left out because the first few hundred iterations fall faster
than any power law the rest follows.  It is a guide, not a promise: the fit knows neither the
learning-rate schedule (a cosine-annealed rate gains most near its end) nor the error floor a model
cannot go below.

``forecast_curve(curve, until=60_000)``
-> ``{"iteration": 60000, "metric": "accuracy", "accuracy": 0.93, ...}``.
"""
from __future__ import annotations

import math
from typing import Any

from ..errors import FewshotError

FIT = "power law in the error (log error linear in log iteration), least squares"
MIN_POINTS = 3


def forecast_curve(curve: list[dict[str, Any]], until: int, *,
                   metric: str = "accuracy") -> dict[str, Any] | None:
    """The validation ``metric`` the curve ``[{"iteration", metric, ...}]`` reaches at iteration
    ``until`` by the power-law fit on its later half (iterations >= half the last one):
    ``{"iteration": until, "metric": metric, metric: value, "fit": FIT,
    "fitted_iterations": [first, last], "points": n, "exponent": b}``, the error going as
    iteration ** b (b < 0 while it improves).
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
    error = math.exp(my + slope * (math.log(until) - mx))
    value = 1.0 - error if metric == "accuracy" else error
    return {"iteration": int(until), "metric": metric, metric: value, "fit": FIT,
            "fitted_iterations": [int(later[0][0]), int(later[-1][0])],
            "points": len(later), "exponent": slope}

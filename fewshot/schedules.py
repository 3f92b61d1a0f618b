"""Schedules over epochs for the inner loop's meta-objective: MAML++'s multi-step-loss (MSL)
weights.

(The derivative-order schedule is the learner's ``first_order_at``; the meta learning rate's cosine
schedule is ``fewshot.meta_optimizer``'s.)
"""
from __future__ import annotations

import math


def msl_weights(steps: int, epoch: int, msl_epochs: int) -> list[float]:
    """MAML++ multi-step-loss weights for ``steps`` inner steps at ``epoch`` (annealed over
    ``msl_epochs``).

    Earlier steps: ``max(1/N - e/(N*E), 0.03/N)``; last: ``min(1/N + e(N-1)/(N*E), 1 -
    (N-1)*0.03/N)``. Usage: ``msl_weights(5, epoch=3, msl_epochs=10)``
    """
    n, e, big_e = steps, max(epoch, 0), max(msl_epochs, 1)
    if n == 1:
        return [1.0]
    decay = 1.0 / n - e / (n * big_e)
    early = max(decay, 0.03 / n)
    last = min(1.0 / n + e * (n - 1) / (n * big_e), 1.0 - (n - 1) * 0.03 / n)
    weights = [early] * (n - 1) + [last]
    assert math.isfinite(sum(weights))
    return weights

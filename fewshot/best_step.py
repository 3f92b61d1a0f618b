"""Best-step adaptation: which inner step's parameters a task predicts with, from support losses
only.

Why: an inner loop run for more steps than the meta-learned initialisation was trained for (or with
a too large rate) can make a task's support loss rise again, or overflow, and its predictions then
get worse silently. The inner loop offers each step's parameters with their support loss
(``BestSoFar.offer``, one extra parameter copy, no data-dependent Python branch, so it runs per task
under ``vmap``), and ``choose_best`` keeps the last step unless its loss ended above the lowest one
seen (``LearnerConfig.best_step``). Only support labels decide, so no query information leaks in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .rules.base import Params


@dataclass
class BestSoFar:
    """The lowest-support-loss parameters among those the inner loop evaluated (``track_best``):
    ``params`` (the adapted names only), their support ``loss`` and ``step`` (updates they had), as
    tensors so that the choice is made per task under ``vmap`` (``torch.where``, no data-dependent
    Python branch).  A non-finite loss is never the best.  The parameters after the last update are
    not among them (their loss needs one more forward): ``choose_best`` completes the choice."""

    params: Params
    loss: torch.Tensor
    step: torch.Tensor

    def offer(self, params: Params, loss: torch.Tensor, step: int) -> BestSoFar:
        """The better of ``self`` and ``(params, loss, step)`` (ties keep the earlier step)."""
        loss = loss.detach()
        better = (loss < self.loss) | (loss.isfinite() & ~self.loss.isfinite())
        return BestSoFar({n: torch.where(better, params[n], p) for n, p in self.params.items()},
                         torch.where(better, loss, self.loss),
                         torch.where(better, torch.full_like(self.step, step), self.step))


def choose_best(best: BestSoFar, last: Params, last_loss: torch.Tensor, steps: int) -> BestSoFar:
    """The step to use: the last one (``steps`` updates, support loss ``last_loss``) unless its loss
    is above the lowest one seen or not finite: adaptation then diverged, and the best earlier step
    is used. Only support losses decide (no query information)."""
    last_loss = last_loss.detach().reshape(best.loss.shape)
    earlier = ~(last_loss <= best.loss) & best.loss.isfinite()  # also when the last loss is NaN
    return BestSoFar({n: torch.where(earlier, p, last[n]) for n, p in best.params.items()},
                     torch.where(earlier, best.loss, last_loss),
                     torch.where(earlier, best.step, torch.full_like(best.step, steps)))

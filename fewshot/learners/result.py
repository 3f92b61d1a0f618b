"""The values a learner's meta-batch run gives back, named: per-task results, one adaptation, the
meta-loss."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ..functional import Params


class TaskResult(NamedTuple):
    """One task's (or, stacked, a meta-batch's) outcome: the (MSL-weighted) query ``total`` that is
    differentiated, the last query loss, the metric, the support losses ``[steps + 1]`` (before each
    update, then after the last when computed), the updated buffer copies, the ``step`` whose
    parameters made the predictions, and ``extras``: per-task diagnostics a learner adds (iMAML's CG
    residual), stacked like the rest and read by ``GradientLearner.batch_metrics``."""

    total: torch.Tensor
    query_loss: torch.Tensor
    metric: torch.Tensor
    support_losses: torch.Tensor
    buffers: Params
    step: torch.Tensor
    extras: Params = {}  # never mutated: a learner that adds diagnostics builds its own dict

    def metrics(self, classification: bool) -> dict[str, float]:
        """A meta-batch's float metrics for logging: mean query ``loss``, mean ``support_loss``
        before the first update, and mean ``accuracy`` (classification) or ``mse``."""
        metrics = {"loss": float(self.query_loss.mean()),
                   "support_loss": float(self.support_losses[:, 0].mean())}
        metrics["accuracy" if classification else "mse"] = float(self.metric.mean())
        return metrics

    def scores(self, classification: bool) -> dict[str, torch.Tensor]:
        """A meta-batch's per-task evaluation (``GradientLearner.evaluate``): ``accuracy`` or
        ``mse``, ``loss``, ``step`` and ``nonfinite_at``; a task whose query loss is not finite
        scores accuracy 0 (mse inf)."""
        finite = self.query_loss.isfinite()
        if classification:
            metric = torch.where(finite, self.metric, torch.zeros_like(self.metric))
        else:
            metric = torch.where(finite, self.metric, torch.full_like(self.metric, float("inf")))
        bad = ~self.support_losses.isfinite()
        first_bad = torch.where(bad.any(-1), bad.long().argmax(-1), torch.full_like(self.step, -1))
        return {("accuracy" if classification else "mse"): metric, "loss": self.query_loss,
                "step": self.step, "nonfinite_at": first_bad}


class Adaptation(NamedTuple):
    """One task's adaptation (``adapt``): the ``params`` used, the ``step`` they are from, and the
    ``support_losses [steps + 1]`` before each update and after the last."""

    params: Params
    step: int
    support_losses: torch.Tensor


@dataclass
class MetaOutput:
    """The meta-loss of a meta-batch (a differentiable scalar) and float metrics for logging."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


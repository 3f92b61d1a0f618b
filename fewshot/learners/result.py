"""The values a learner's meta-batch run gives back, named (what used to travel as positional tuples)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ..functional import Params


class TaskResult(NamedTuple):
    """One task's (or, stacked, a meta-batch's) outcome: the (MSL-weighted) query ``total`` that is
    differentiated, the last query loss, the metric, the support losses ``[steps + 1]`` (before each
    update, then after the last when computed), the updated buffer copies, and the ``step`` whose
    parameters made the predictions."""

    total: torch.Tensor
    query_loss: torch.Tensor
    metric: torch.Tensor
    support_losses: torch.Tensor
    buffers: Params
    step: torch.Tensor


@dataclass
class MetaOutput:
    """The meta-loss of a meta-batch (a differentiable scalar) and float metrics for logging."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


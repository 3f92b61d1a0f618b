"""What every learner returns and shares: ``MetaOutput`` and input checks on ``TaskBatch``es.

Usage: ``out = learner.meta_loss(batch); out.loss.backward(); print(out.metrics["accuracy"])``
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import FewshotError


@dataclass
class MetaOutput:
    """The meta-loss of a meta-batch (a differentiable scalar) and float metrics for logging."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def check_task(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor | None,
               query_y: torch.Tensor | None, ways: int | None, *, batched: bool) -> None:
    """Raise ``FewshotError`` (one line) if a task's (or meta-batch's) tensors do not fit together."""
    lead = 2 if batched else 1
    what = "TaskBatch" if batched else "task"
    pairs = [("support", support_x, support_y)]
    if query_x is not None and query_y is not None:
        pairs.append(("query", query_x, query_y))
    for name, x, y in pairs:
        if x.dim() < lead or y.dim() < lead:
            raise FewshotError(f"{what} {name} tensors have too few dims (x {tuple(x.shape)}, y {tuple(y.shape)}): expected leading {'[B, n]' if batched else '[n]'}")
        if x.shape[:lead] != y.shape[:lead]:
            raise FewshotError(f"{what} {name}_x {tuple(x.shape)} and {name}_y {tuple(y.shape)} disagree on the leading dims: give one target per example")
        if x.shape[lead - 1] == 0:
            raise FewshotError(f"{what} {name} set is empty: give at least one example")
        if ways is not None:
            if y.is_floating_point() or y.dtype == torch.bool:
                raise FewshotError(f"{what} {name}_y must be integer class labels for classification (ways={ways}), got {y.dtype}; use ways=None for regression")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= ways):
                raise FewshotError(f"{what} {name}_y labels must be in 0..{ways - 1} (ways={ways}), got {int(y.min())}..{int(y.max())}: relabel classes per task")
        elif not y.is_floating_point():
            raise FewshotError(f"{what} {name}_y is {y.dtype} but ways=None means regression: give float targets or set ways")
    if len(pairs) == 2:
        sx, qx = support_x, query_x
        if sx.shape[lead:] != qx.shape[lead:] or (batched and sx.shape[0] != qx.shape[0]):
            raise FewshotError(f"support_x {tuple(sx.shape)} and query_x {tuple(qx.shape)} do not match: support and query examples must have the same shape (and the same number of tasks)")
        if support_y.shape[lead:] != query_y.shape[lead:]:
            raise FewshotError(f"support_y {tuple(support_y.shape)} and query_y {tuple(query_y.shape)} do not match beyond the example dim")

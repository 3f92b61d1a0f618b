"""Small seeded tasks the learner tests share (float64, so oracle comparisons can be tight)."""
from __future__ import annotations

import torch

from episodes import TaskBatch


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cls_batch(seed: int = 0, b: int = 3, ways: int = 3, shots: int = 2, queries: int = 2, size: int = 8,
              dtype: torch.dtype = torch.float64) -> TaskBatch:
    """``b`` random ``ways``-way image tasks ``[1, size, size]`` with balanced labels."""
    g = gen(seed)
    sx = torch.randn(b, ways * shots, 1, size, size, generator=g, dtype=dtype)
    qx = torch.randn(b, ways * queries, 1, size, size, generator=g, dtype=dtype)
    sy = torch.arange(ways).repeat_interleave(shots).expand(b, -1).clone()
    qy = torch.arange(ways).repeat_interleave(queries).expand(b, -1).clone()
    return TaskBatch(sx, sy, qx, qy, ways)


def reg_batch(seed: int = 0, b: int = 3, k: int = 5, d: int = 3, dtype: torch.dtype = torch.float64) -> TaskBatch:
    """``b`` random regression tasks: ``k`` points of ``d`` features, 2 targets."""
    g = gen(seed)
    return TaskBatch(torch.randn(b, k, d, generator=g, dtype=dtype), torch.randn(b, k, 2, generator=g, dtype=dtype),
                     torch.randn(b, k, d, generator=g, dtype=dtype), torch.randn(b, k, 2, generator=g, dtype=dtype),
                     None)


def meta_train(learner, tasks, iterations: int, meta_batch: int, opt: torch.optim.Optimizer) -> None:
    """Plain meta-training: ``iterations`` Adam steps on ``meta_batch`` tasks from ``tasks.sample``."""
    for _ in range(iterations):
        out = learner.meta_loss(tasks.sample(meta_batch))
        opt.zero_grad()
        out.loss.backward()
        opt.step()

"""Small seeded tasks the learner tests share (float64, so oracle comparisons can be tight)."""
from __future__ import annotations

import torch
from torch import nn

from episodes import TaskBatch
from fewshot.nn import Conv4, StepBatchNorm1d


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cls_batch(seed: int = 0, b: int = 3, ways: int = 3, shots: int = 2, queries: int = 2,
              size: int = 8,
              dtype: torch.dtype = torch.float64) -> TaskBatch:
    """``b`` random ``ways``-way image tasks ``[1, size, size]`` with balanced labels."""
    g = gen(seed)
    sx = torch.randn(b, ways * shots, 1, size, size, generator=g, dtype=dtype)
    qx = torch.randn(b, ways * queries, 1, size, size, generator=g, dtype=dtype)
    sy = torch.arange(ways).repeat_interleave(shots).expand(b, -1).clone()
    qy = torch.arange(ways).repeat_interleave(queries).expand(b, -1).clone()
    return TaskBatch(sx, sy, qx, qy, ways)


def vector_batch(seed: int = 0, b: int = 3) -> TaskBatch:
    """``b`` random 3-way tasks of 4-feature vectors: 2 shots and 3 queries per class (float64)."""
    g = gen(seed)
    sx = torch.randn(b, 6, 4, generator=g, dtype=torch.float64)
    qx = torch.randn(b, 9, 4, generator=g, dtype=torch.float64)
    sy = torch.arange(3).repeat_interleave(2).expand(b, -1).clone()
    qy = torch.arange(3).repeat_interleave(3).expand(b, -1).clone()
    return TaskBatch(sx, sy, qx, qy, 3)


def reg_batch(seed: int = 0, b: int = 3, k: int = 5, d: int = 3,
              dtype: torch.dtype = torch.float64) -> TaskBatch:
    """``b`` random regression tasks: ``k`` points of ``d`` features, 2 targets."""
    g = gen(seed)
    return TaskBatch(torch.randn(b, k, d, generator=g, dtype=dtype),
                     torch.randn(b, k, 2, generator=g, dtype=dtype),
                     torch.randn(b, k, d, generator=g, dtype=dtype),
                     torch.randn(b, k, 2, generator=g, dtype=dtype),
                     None)


def meta_train(learner, tasks, iterations: int, meta_batch: int,
               opt: torch.optim.Optimizer) -> None:
    """Plain meta-training: ``iterations`` Adam steps on ``meta_batch`` tasks from
    ``tasks.sample``."""
    for _ in range(iterations):
        out = learner.meta_loss(tasks.sample(meta_batch))
        opt.zero_grad()
        out.loss.backward()
        opt.step()


def mlp(seed: int = 0, bn: bool = False) -> nn.Sequential:
    """Linear(3, 6) -> (StepBatchNorm1d) -> tanh -> Linear(6, 2), float64, seeded init."""
    torch.manual_seed(seed)  # test-only module init
    layers = [nn.Linear(3, 6)] + ([StepBatchNorm1d(6)] if bn else []) + [nn.Tanh(), nn.Linear(6, 2)]
    return nn.Sequential(*layers).double()


def conv(seed: int = 0, bn_steps: int = 1) -> Conv4:
    """A small 3-way Conv4 for 8x8 images (two blocks of 4 channels), float64, seeded init."""
    torch.manual_seed(seed)  # test-only module init
    return Conv4(1, 3, hidden=4, image_size=8, blocks=2, bn_steps=bn_steps).double()


def meta_grads(learner, batch, epoch: int = 0):
    """``(meta_loss output, its gradient w.r.t. every learner parameter, zeros where unused)``."""
    out = learner.meta_loss(batch, epoch=epoch)
    grads = torch.autograd.grad(out.loss, list(learner.parameters()), allow_unused=True)
    return out, [torch.zeros_like(p) if g is None else g
                 for p, g in zip(learner.parameters(), grads)]


def sinusoid_mse_before_after(name: str, options: dict, make_opt, *,
                              iterations: int = 100) -> tuple[float, float]:
    """Mean validation MSE of learner ``name`` on an MLP before and after ``iterations`` of
    meta-training on sinusoid tasks (meta-batch 5, 5 shots, 10 queries; ``make_opt(params)`` builds
    the meta-optimizer)."""
    import warnings

    from episodes import SinusoidTasks
    from fewshot.errors import AdaptationWarning
    from fewshot.learners import build_learner
    from fewshot.nn import MLP

    torch.manual_seed(0)  # test-only module init
    learner = build_learner(name, MLP(1, 1), {"inner_steps": 5, "task_batching": "vmap", **options})
    val = SinusoidTasks(5, 10, seed=1).sample(200)
    with warnings.catch_warnings():
        # the untrained model's inner loop may overshoot
        warnings.simplefilter("ignore", AdaptationWarning)
        before = learner.eval().evaluate(val)["mse"].mean().item()
    learner.train()
    meta_train(learner, SinusoidTasks(5, 10, seed=0), iterations, 5, make_opt(learner.parameters()))
    return before, learner.eval().evaluate(val)["mse"].mean().item()

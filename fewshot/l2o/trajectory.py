"""Run any ``torch.optim``-style optimizer on a batch of problems and record its loss curve.

Usage::

    # [B, 101]
    losses = run_trajectory(problems, lambda ps: torch.optim.Adam(ps, lr=0.01), steps=100)
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from .problems import ProblemBatch

MakeOptimizer = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]


def run_trajectory(problems: ProblemBatch, make_optimizer: MakeOptimizer,
                   steps: int) -> torch.Tensor:
    """Losses ``[B, steps + 1]``: column ``t`` is ``f(theta_t)`` on step ``t``'s mini-batch (``t =
    0`` is the start).

    A problem whose loss becomes non-finite keeps ``inf``/``nan`` from then on (it diverged).
    """
    theta = problems.init().requires_grad_(True)
    optimizer = make_optimizer([theta])
    curve = torch.empty(problems.num_problems, steps + 1)
    for t in range(steps):
        loss = problems.loss(theta, t)
        curve[:, t] = loss.detach()
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
    with torch.no_grad():
        curve[:, steps] = problems.loss(theta, steps)
    return curve


def final_loss(curve: torch.Tensor) -> float:
    """Mean loss at the last step over problems; ``inf`` if any problem diverged (non-finite)."""
    last = curve[:, -1]
    return float(last.mean()) if bool(torch.isfinite(last).all()) else float("inf")

"""Hand-designed baselines (SGD, RMSprop, Adam, SGD with Nesterov momentum) and their learning-rate
tuning.

Hyper-parameters other than the learning rate are the Torch7 ``optim`` defaults the thesis used
(RMSprop alpha 0.99, eps 1e-8; Adam betas (0.9, 0.999), eps 1e-8; NAG momentum 0.9), which are
also PyTorch's. Each learning rate comes from ``LR_GRID`` by the lowest mean final loss on a
separate set of tuning problems (a diverging setting scores ``inf``).

Usage::

    best = tune_baselines(tuning_problems, steps=100)        # {"adam": Tuned(lr=0.03, ...), ...}
    opt = make_baseline("adam", 0.03)([theta])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..errors import ConfigError
from .problems import ProblemBatch
from .trajectory import MakeOptimizer, final_loss, run_trajectory

LR_GRID: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)
BASELINES: tuple[str, ...] = ("sgd", "rmsprop", "adam", "nag")


def make_baseline(name: str, lr: float) -> MakeOptimizer:
    """A factory ``params -> torch.optim.Optimizer`` for baseline ``name`` at learning rate
    ``lr``."""
    if name == "sgd":
        return lambda ps: torch.optim.SGD(ps, lr=lr)
    if name == "rmsprop":
        return lambda ps: torch.optim.RMSprop(ps, lr=lr, alpha=0.99, eps=1e-8)
    if name == "adam":
        return lambda ps: torch.optim.Adam(ps, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if name == "nag":
        return lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True)
    raise ConfigError(f"unknown baseline optimizer {name!r}: use one of {', '.join(BASELINES)}")


@dataclass
class Tuned:
    """A baseline's chosen learning rate and the mean final loss of every grid value."""

    name: str
    lr: float
    grid: dict[float, float] = field(default_factory=dict)


def tune_baselines(problems: ProblemBatch, steps: int, names: Sequence[str] = BASELINES,
                   grid: Sequence[float] = LR_GRID,
                   tick: Callable[[], object] | None = None) -> dict[str, Tuned]:
    """Pick each baseline's learning rate from ``grid`` by mean final loss on ``problems``.

    ``tick()`` is called after each of the ``len(names) * len(grid)`` runs (a progress bar's
    update).
    """
    if not grid:
        raise ConfigError("the learning-rate grid is empty: give at least one value")
    tuned: dict[str, Tuned] = {}
    for name in names:
        scores = {}
        for lr in grid:
            scores[lr] = final_loss(run_trajectory(problems, make_baseline(name, lr), steps))
            if tick is not None:
                tick()
        best = min(scores, key=lambda lr: (scores[lr], lr))
        tuned[name] = Tuned(name, best, scores)
    return tuned

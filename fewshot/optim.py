"""The meta-optimizer: Adam on the meta-parameters, with optional cosine annealing of its LR (MAML++ CA).

Usage::

    opt, sched = build_meta_optimizer(learner.parameters(), MetaOptimConfig(lr=1e-3, cosine=True), 60000)
    for it in range(60000):
        opt.zero_grad(); learner.meta_loss(batch).loss.backward(); opt.step()
        if sched is not None:
            sched.step()          # once per meta-iteration
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from .errors import ConfigError


@dataclass
class MetaOptimConfig:
    """Adam settings; ``cosine`` anneals the LR from ``lr`` to ``min_lr`` over the run (per iteration).

    Usage: ``MetaOptimConfig(lr=1e-3, cosine=True, min_lr=1e-5)``
    """

    lr: float = 1e-3
    cosine: bool = False
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if not self.lr > 0:
            raise ConfigError(f"meta lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")

    @classmethod
    def mamlpp(cls, **overrides) -> "MetaOptimConfig":
        """MAML++'s meta-optimizer: Adam 1e-3 cosine-annealed to 1e-5. Usage: ``MetaOptimConfig.mamlpp()``"""
        return cls(**{"lr": 1e-3, "cosine": True, "min_lr": 1e-5, **overrides})


def build_meta_optimizer(params: Iterable[torch.nn.Parameter], config: MetaOptimConfig | None = None,
                         total_iterations: int = 1) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LRScheduler | None]:
    """Adam over ``params`` and, with ``config.cosine``, a ``CosineAnnealingLR`` over ``total_iterations``
    steps (call ``scheduler.step()`` once per meta-iteration), else None.

    Usage: ``opt, sched = build_meta_optimizer(learner.parameters(), MetaOptimConfig(cosine=True), 50000)``
    """
    config = config or MetaOptimConfig()
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("the meta-optimizer got no trainable parameters: pass learner.parameters()")
    if not isinstance(total_iterations, int) or total_iterations <= 0:
        raise ConfigError(f"total_iterations must be a positive integer, got {total_iterations!r}")
    opt = torch.optim.Adam(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    sched = None
    if config.cosine:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_iterations, eta_min=config.min_lr)
    return opt, sched

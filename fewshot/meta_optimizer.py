"""The meta-optimizer: Adam (or plain SGD) on the meta-parameters, optional cosine annealing (MAML++
CA), optional clipping.

One config for it, ``MetaOptimConfig``: the ``optim`` section of a ``TrainConfig`` and the argument
of :func:`build_meta_optimizer` for your own loops::

    config = MetaOptimConfig(lr=1e-3, cosine=True)
    opt, sched = build_meta_optimizer(learner.parameters(), config, 60000)
    for it in range(60000):
        opt.zero_grad(); learner.meta_loss(batch).loss.backward(); opt.step()
        if sched is not None:
            sched.step()          # once per meta-iteration
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch

from .checks import check_count, check_number, is_finite_number
from .errors import ConfigError

OPTIMIZERS = ("adam", "sgd")


@dataclass
class MetaOptimConfig:
    """Adam settings, the cosine schedule and meta-gradient clipping (validated on construction).

    ``optimizer``: ``"adam"`` (default) or ``"sgd"`` (plain SGD: ``theta -= lr * g``; with Reptile's
    meta-gradient that is Reptile's outer step with step size ``lr``); ``betas`` are Adam's and must
    keep their default with SGD.

    ``cosine`` anneals the LR from ``lr`` to ``min_lr`` over the run (one step per meta-iteration);
    ``min_lr`` is used only with ``cosine``. ``clip_value`` clamps each meta-gradient element to
    ``±clip_value``; ``clip_norm`` rescales the whole meta-gradient to that L2 norm at most.
    """

    lr: float = 1e-3
    cosine: bool = False
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    clip_value: float | None = None
    clip_norm: float | None = None
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}: "
                "e.g. --set optim.optimizer=adam")
        betas = tuple(self.betas)  # YAML/JSON give a list
        if len(betas) != 2 or not all(is_finite_number(b) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {self.betas}: "
                              "e.g. --set optim.betas=[0.9,0.999]")
        self.betas = (float(betas[0]), float(betas[1]))
        if self.optimizer == "sgd" and self.betas != (0.9, 0.999):
            raise ConfigError(
                "optim.betas are Adam's: with optim.optimizer=sgd drop the optim.betas setting")
        # every float must be finite: an inf/NaN setting would only show up as NaN weights later
        check_number(self.lr, "optim.lr", above=0, note=" (the meta-optimizer's learning rate)",
                     hint=": e.g. --set optim.lr=0.001")
        if not (is_finite_number(self.min_lr) and self.min_lr >= 0) or (self.cosine
                                                                        and self.min_lr > self.lr):
            raise ConfigError(
                f"optim.min_lr must be a finite number in [0, lr={self.lr}] with cosine annealing, "
                "got "
                f"{self.min_lr!r}: e.g. --set optim.min_lr=1e-5")
        check_number(self.weight_decay, "optim.weight_decay", at_least=0,
                     hint=": e.g. --set optim.weight_decay=0")
        for name in ("clip_value", "clip_norm"):
            value = getattr(self, name)
            if value is not None:
                check_number(value, f"optim.{name}", above=0, note=" or null (no clipping)",
                             hint=f": e.g. --set optim.{name}=10")

    @classmethod
    def mamlpp(cls, **overrides) -> MetaOptimConfig:
        """MAML++'s meta-optimizer: Adam 1e-3 cosine-annealed to 1e-5."""
        return cls(**{"lr": 1e-3, "cosine": True, "min_lr": 1e-5, **overrides})


def build_meta_optimizer(params: Iterable[torch.nn.Parameter],
                         config: MetaOptimConfig | None = None,
                         total_iterations: int = 1) -> tuple[torch.optim.Optimizer,
                                                             torch.optim.lr_scheduler.LRScheduler
                                                             | None]:
    """Adam (or SGD, ``config.optimizer``) over the trainable ``params`` and, with
    ``config.cosine``, a ``CosineAnnealingLR`` over ``total_iterations`` steps (call
    ``scheduler.step()`` once per meta-iteration), else None."""
    config = config or MetaOptimConfig()
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ConfigError(
            "the meta-optimizer got no trainable parameters: pass learner.parameters()")
    check_count(total_iterations, "total_iterations")
    opt: torch.optim.Optimizer
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(trainable, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.Adam(trainable, lr=config.lr, betas=config.betas,
                               weight_decay=config.weight_decay)
    sched = None
    if config.cosine:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_iterations,
                                                           eta_min=config.min_lr)
    return opt, sched


def fit_schedule(scheduler: torch.optim.lr_scheduler.LRScheduler | None, iteration: int,
                 total_iterations: int) -> None:
    """Make a restored cosine schedule the one a run of ``total_iterations`` has (a no-op when it
    is).

    A scheduler's state carries the ``T_max`` of the run that saved it, so a run extended with a
    larger ``--iterations`` (or one started by ``fewshot pretrained calibrate``) would anneal over
    the old length and then climb back up (the cosine is periodic), or, extended after its end, stay
    at ``min_lr`` (PyTorch's recursive form cannot leave it). The schedule began at ``iteration -
    last_epoch``; it is given the length left from there to ``total_iterations`` and the LR of that
    cosine at this point, so the rest of the run is what it would have been had the longer run been
    asked for from the start.
    """
    if not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return
    t = scheduler.last_epoch
    length = max(total_iterations - (iteration - t), t, 1)
    if length == scheduler.T_max:
        return
    scheduler.T_max = length
    lrs = [scheduler.eta_min + (base - scheduler.eta_min) * (1 + math.cos(math.pi * t / length)) / 2
           for base in scheduler.base_lrs]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() reports


def clip_meta_gradients(params: Iterable[torch.nn.Parameter], config: MetaOptimConfig) -> None:
    """Apply ``config``'s clipping to the gradients of ``params`` (call between ``backward`` and
    ``step``)."""
    params = list(params)
    if config.clip_value is not None:
        torch.nn.utils.clip_grad_value_(params, config.clip_value)
    if config.clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, config.clip_norm)

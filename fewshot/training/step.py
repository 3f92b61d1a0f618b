"""One meta-iteration: sample a meta-batch, back-propagate the meta-loss, average over processes,
check, clip and step.  The training loop calls :func:`train_step` once per iteration; everything the
loop does around it (validation, checkpoints, the metrics log) is in ``loop.py``."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..config import TrainConfig
from ..errors import AdaptationError, FewshotError
from ..learners import GradientLearner
from ..meta_optimizer import clip_meta_gradients
from ..precision import autocast
from ..runtime import distributed
from ..runtime.distributed import Ranks


@dataclass
class StepParts:
    """What every meta-iteration of a run works on (built once, before the first)."""

    learner: GradientLearner
    source: Any  # a task source: sample(n), state_dict(), load_state_dict()
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    cfg: TrainConfig
    device: torch.device
    ranks: Ranks
    autocast_dtype: torch.dtype | None  # None: float32 (also bf16 on a CPU without it)
    params: list[torch.Tensor] = field(init=False)  # the trainable meta-parameters
    # averaged over processes (batch-norm statistics)
    floating_buffers: list[torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        self.params = [p for p in self.learner.parameters() if p.requires_grad]
        self.floating_buffers = [b for b in self.learner.buffers() if b.is_floating_point()]


@dataclass
class StepResult:
    loss: float  # the meta-loss (averaged over processes)
    metrics: dict[str, float]  # the learner's metrics of the meta-batch (averaged over processes)


def _scalar(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _all_finite(params: list[torch.Tensor]) -> bool:
    """Whether every entry of ``params`` is finite: one fused max-abs per tensor (no overflow, NaN
    propagates)."""
    if not params:
        return True
    with torch.no_grad():
        return bool(
            torch.stack([n.float() for n in torch._foreach_norm(params, float("inf"))]).isfinite(
                ).all())


def train_step(parts: StepParts, iteration: int, kept: Callable[[], str]) -> StepResult:
    """Meta-iteration ``iteration`` (1-based).  Every failure is a one-line FewshotError that names
    the iteration and ``kept()``, what is left on disk; nothing is stepped with a non-finite loss,
    and parameters that became non-finite are never returned to the loop to be saved."""
    learner, cfg, ranks = parts.learner, parts.cfg, parts.ranks
    batch = parts.source.sample(cfg.meta_batch)
    if batch.support_x.device != parts.device:
        batch = batch.to(parts.device, non_blocking=True)
    parts.optimizer.zero_grad(set_to_none=True)
    epoch = (iteration - 1) // cfg.iterations_per_epoch
    before = [b.clone() for b in parts.floating_buffers] if ranks.active else []
    try:  # task by task: peak memory of one task's graph (same gradients)
        with autocast(parts.device, parts.autocast_dtype):
            result = learner.meta_backward(batch, epoch=epoch)
    except AdaptationError as exc:
        raise AdaptationError(f"iteration {iteration}: {exc} ({kept()})") from exc
    metrics = {k: _scalar(v) for k, v in (result.metrics or {}).items()}
    loss_value = _scalar(result.loss)
    # one meta-batch over all ranks: average gradients, statistics and logged values
    if ranks.active:
        distributed.average_gradients(parts.params, ranks)
        distributed.average_buffers(parts.floating_buffers, before, ranks)
        loss_value = distributed.mean_scalars({"__loss__": loss_value}, ranks)["__loss__"]
        metrics = distributed.mean_scalars(metrics, ranks)
    if not math.isfinite(loss_value):
        raise FewshotError(
            f"meta-loss is {loss_value} at iteration {iteration}: training stopped; {kept()}; "
            "lower optim.lr or learner.inner_lr, or set optim.clip_norm")
    clip_meta_gradients(learner.parameters(), cfg.optim)
    try:
        parts.optimizer.step()
    # a finite but huge optim.lr / weight_decay overflows float32 inside Adam
    except RuntimeError as exc:
        if "overflow" not in str(exc):
            raise
        raise FewshotError(
            f"the optimizer step of iteration {iteration} overflowed ({exc}): training "
            f"stopped; {kept()}; lower optim.lr or optim.weight_decay") from exc
    if not _all_finite(parts.params):  # a finite loss can still give an inf/NaN step: never save it
        raise FewshotError(
            f"the meta-parameters became non-finite (NaN/inf) in the optimizer step of "
            f"iteration {iteration}: training stopped; {kept()}; lower optim.lr or "
            "set "
            "optim.clip_norm")
    if parts.scheduler is not None:
        parts.scheduler.step()
    return StepResult(loss_value, metrics)

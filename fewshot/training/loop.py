"""The meta-training loop: Adam (+ cosine annealing), clipping, validation, best/last checkpoints,
resume.

The run folder (its files, lock, checks and config) is
:class:`~fewshot.training.run_folder.RunFolder`; one meta-iteration is
:func:`~fewshot.training.step.train_step`; validation is ``validation.py``.  This module puts them
in order: check and build everything before writing anything, then step, log, validate and
checkpoint.

Resume is exact: a run killed at any point and resumed from its ``last.pt`` ends bit-identical (on
CPU; on CUDA with ``deterministic=True`` up to the GPU's own determinism) to an uninterrupted run,
because the checkpoint holds the learner, optimizer, scheduler, task-source generator and global RNG
states, and validation draws from its own fixed episode set.

Launched by ``torchrun`` (several processes), the same function trains data-parallel
(``fewshot.runtime.distributed``): each rank adapts its share of every meta-batch, meta-gradients
and batch-norm statistics are averaged, validation episodes are split over the ranks and gathered,
and only rank 0 touches the run folder (lock, config, checkpoints, metrics, progress bar).  Since
every rank draws the whole meta-batch's random numbers, a checkpoint does not depend on the number
of processes: a run may be resumed with another one (as long as it divides the meta-batch).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from episodes import ShardedSource

from ..config import TrainConfig
from ..errors import FewshotError
from ..learners import GradientLearner
from ..meta_optimizer import fit_schedule
from ..precision import autocast, resolve_precision
from ..runtime import distributed
from ..runtime.distributed import Ranks
from ..runtime.launch import check_split
from .build import (
    build_fixed_set,
    build_learner_from_config,
    build_optimizer,
    build_train_source,
    configure_backends,
    resolve_device,
    run_identity,
)
from .checkpoint import TrainingState, restore_training_state, save_checkpoint
from .clock import TrainingClock
from .interrupt import StopSignals, TrainingInterrupted
from .metrics_log import MetricsLogger
from .rng import seed_global_rng
from .run_folder import BEST, LAST, RunFolder
from .step import StepParts, StepResult, train_step
from .validation import validate


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path
    iterations: int
    metric: str
    best_metric: float | None
    best_iteration: int | None
    last_loss: float | None
    resumed_from: int
    # the trained learner (on the training device), right after training
    learner: GradientLearner | None = None


def _better(metric: str, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new < best if metric == "mse" else new > best


def train(cfg: TrainConfig, out: str | Path, *, resume: bool | None = None, quiet: bool = False,
          tensorboard: bool = True,
          dist_timeout: float = distributed.DEFAULT_TIMEOUT_S) -> TrainResult:
    """Meta-train ``cfg`` into run directory ``out``.

    ``resume=None`` (default) resumes automatically when ``out/last.pt`` exists; ``True`` requires
    it; ``False`` starts afresh (an existing ``last.pt`` is then an error, so nothing is overwritten
    by accident). Raises FewshotError/DataError (one-line messages) for every expected failure.

    Only one training runs in ``out`` at a time (:class:`RunLock`, released on any exit, even
    SIGKILL); the run holding it first removes the temp files of killed writes there.  Under
    torchrun the job joins its process group first (``dist_timeout``: seconds a collective waits for
    the other ranks).
    """
    folder = RunFolder(out)
    ranks, device = distributed.setup(resolve_device(cfg.device), timeout_s=dist_timeout)
    try:
        result = _train(cfg, folder, ranks, device, resume=resume, quiet=quiet,
                        tensorboard=tensorboard)
        distributed.barrier(ranks)  # nobody leaves the group while rank 0 still writes
        return result
    finally:
        folder.release()
        distributed.teardown(ranks)


class _Progress:
    """What the loop keeps between iterations, and its writes: best score, checkpoints written, the
    log."""

    def __init__(self, parts: StepParts, folder: RunFolder, logger: MetricsLogger | None,
                 clock: TrainingClock,
                 metric: str, start: int, best: float | None, best_it: int | None,
                 resuming: bool) -> None:
        self.parts, self.folder, self.logger, self.clock, self.metric = (parts, folder, logger,
                                                                         clock, metric)
        self.best, self.best_it = best, best_it
        self.written: dict[str, int | None] = {LAST: start if resuming else None, BEST: best_it}
        self.plain_cfg, self.identity = parts.cfg.to_dict(), run_identity(parts.cfg)

    def kept(self) -> str:
        """What an error says about the checkpoints on disk (never one that does not exist)."""
        last, best = self.folder.last, self.folder.best
        if self.written[LAST] is not None:
            return f"the last good checkpoint {last} (iteration {self.written[LAST]}) is untouched"
        if self.written[BEST] is not None and best.exists():
            return (f"no {LAST} was written yet ({best}, iteration {self.written[BEST]}, "
                    "is untouched)")
        return "no checkpoint was written"

    def checkpoint(self, path: Path, iteration: int) -> None:
        p = self.parts
        if not p.ranks.main:
            return
        state = TrainingState(p.learner, p.optimizer, p.scheduler, {"train": p.source})
        save_checkpoint(path, state, iteration=iteration, config=self.plain_cfg,
                        identity=self.identity,
                        extra={"best_metric": self.best, "best_iteration": self.best_it,
                               "metric": self.metric},
                        clock=self.clock.state(iteration),
                        hint=f"choose another --out ({self.kept()})")
        self.written[path.name] = iteration

    def log(self, kind: str, iteration: int, **values: Any) -> None:
        if self.logger is None:
            return
        try:
            self.logger.write(kind, iteration, **values)
        except OSError as exc:
            raise FewshotError(f"cannot append to {self.logger.path} at iteration {iteration} "
                               f"({exc.strerror or exc}): training stopped; {self.kept()}; free "
                               "disk space or "
                               "choose another --out, then run the command again") from exc

    def validate(self, val_set: Any, iteration: int, progress: bool) -> None:
        p = self.parts
        try:
            with autocast(p.device, p.autocast_dtype):
                summary, divergence = validate(p.learner, val_set, p.cfg, self.metric, p.ranks,
                                               progress=progress)
        except FewshotError as exc:
            raise type(exc)(
                f"validation at iteration {iteration} failed: {exc}; {self.kept()}") from exc
        extra = {}
        if divergence is not None:
            extra = divergence.metrics()
            # a mere rise is in the metrics (and AdaptationWarning)
            if p.ranks.main and divergence.nonfinite:
                tqdm.write(f"warning: {divergence.message(iteration, val_set.count)}",
                           file=sys.stderr)
        self.log("val", iteration,
                 **{self.metric: summary.mean, "ci95": summary.ci95, "episodes": summary.n,
                    **extra})
        if _better(self.metric, summary.mean, self.best):
            self.best, self.best_it = summary.mean, iteration
            self.checkpoint(self.folder.best, iteration)

    def show(self, bar: tqdm, step: StepResult) -> None:
        bar.update(1)
        post = {"loss": f"{step.loss:.4f}"}
        if self.metric in step.metrics:
            post[self.metric[:3]] = f"{step.metrics[self.metric]:.3f}"
        bar.set_postfix(post, refresh=False)


def _train(cfg: TrainConfig, folder: RunFolder, ranks: Ranks, device: torch.device, *,
           resume: bool | None, quiet: bool, tensorboard: bool) -> TrainResult:
    quiet = quiet or not ranks.main
    # --- build and check everything before writing anything ---------------------------------------
    ckpt = distributed.from_main(lambda: folder.open(cfg, resume), ranks)
    resuming = ckpt is not None
    clock = TrainingClock(int(ckpt["iteration"]) if resuming else 0,
                          processes=ranks.world if ranks.active else 1,
                          device=str(device), earlier=ckpt.get("clock") if resuming else None)
    check_split(cfg.meta_batch, ranks.world)
    configure_backends(cfg)
    learner = build_learner_from_config(cfg, device)
    source: Any = build_train_source(cfg, device)
    if ranks.active:
        source = ShardedSource(source, ranks.rank, ranks.world)
        learner.shard_tasks(ranks.rank, ranks.world)
    val_set = build_fixed_set(cfg, "val", count=cfg.val_episodes,
                              device=device) if cfg.val_every else None
    optimizer, scheduler = build_optimizer(learner, cfg)
    distributed.from_main(folder.claim, ranks)  # runs on rank 0 only
    start, best, best_it = 0, None, None
    metric = "mse" if cfg.data.is_regression else "accuracy"
    if ckpt is None:
        seed_global_rng(cfg.seed)
    else:
        start = restore_training_state(ckpt,
                                       TrainingState(learner, optimizer, scheduler,
                                                     {"train": source}))
        fit_schedule(scheduler, start, cfg.iterations)  # --iterations may extend the run
        best, best_it = ckpt["extra"].get("best_metric"), ckpt["extra"].get("best_iteration")
    logger = None
    if ranks.main:
        folder.save_config(cfg)
        logger = MetricsLogger(folder.path, tensorboard=tensorboard,
                               resume_from=start if resuming else None)
    # None: float32 (also bf16 on a CPU without it)
    precision = resolve_precision(cfg.precision, device)
    parts = StepParts(learner, source, optimizer, scheduler, cfg, device, ranks, precision)
    run = _Progress(parts, folder, logger, clock, metric, start, best, best_it, resuming)
    # --- train ------------------------------------------------------------------------------------
    bar = tqdm(total=cfg.iterations, initial=start, disable=quiet, dynamic_ncols=True, unit="it",
               desc=cfg.preset or "train")
    last_loss: float | None = None
    learner.train()
    with StopSignals(announce=ranks.main and sys.stderr.isatty()) as stop:
        try:
            for iteration in range(start + 1, cfg.iterations + 1):
                last = iteration == cfg.iterations
                step = train_step(parts, iteration, run.kept)
                last_loss = step.loss
                if iteration % cfg.log_every == 0 or last:
                    lr = optimizer.param_groups[0]["lr"]
                    run.log("train", iteration, **{**step.metrics, "loss": step.loss, "lr": lr})
                run.show(bar, step)
                if val_set is not None and (iteration % cfg.val_every == 0 or last):
                    bar.set_postfix_str(f"validating on {val_set.count} episodes", refresh=True)
                    run.validate(val_set, iteration, progress=not quiet)
                saved = iteration % cfg.checkpoint_every == 0 or last
                if saved:
                    distributed.check_in_sync(learner, ranks, f"iteration {iteration}")
                    run.checkpoint(folder.last, iteration)
                    if val_set is None:  # no validation: "best" is the latest
                        run.checkpoint(folder.best, iteration)
                signum = stop.requested(ranks)
                if signum and not last:  # every rank agrees: save where the run is, then stop
                    if not saved:
                        distributed.check_in_sync(learner, ranks, f"iteration {iteration}")
                        run.checkpoint(folder.last, iteration)
                    distributed.barrier(ranks)
                    raise TrainingInterrupted(signum, iteration, folder.last)
        finally:
            bar.close()
            if logger is not None:
                logger.close()
    return TrainResult(folder.path, cfg.iterations, metric, run.best, run.best_it, last_loss, start,
                       learner)

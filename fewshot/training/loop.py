"""The meta-training loop: Adam (+ cosine annealing), clipping, validation, best/last checkpoints, resume.

A run directory holds ``config.yaml``, ``last.pt`` (full training state, every ``checkpoint_every``
iterations and at the end), ``best.pt`` (same format, at the best validation score),
``metrics.jsonl``, ``.run.lock`` (one run at a time, see ``runlock``) and, when TensorBoard is
installed, ``tensorboard/``.

Resume is exact: a run killed at any point and resumed from its ``last.pt`` ends bit-identical (on
CPU; on CUDA with ``deterministic=True`` up to the GPU's own determinism) to an uninterrupted run,
because the checkpoint holds the learner, optimizer, scheduler, task-source generator and global RNG
states, and validation draws from its own fixed episode set.

Launched by ``torchrun`` (several processes), the same function trains data-parallel
(``fewshot.distributed``): each rank adapts its share of every meta-batch, meta-gradients and
batch-norm statistics are averaged, validation episodes are split over the ranks and gathered, and
only rank 0 touches the run folder (lock, config, checkpoints, metrics, progress bar).  Since every
rank draws the whole meta-batch's random numbers, a checkpoint does not depend on the number of
processes: a run may be resumed with another one (as long as it divides the meta-batch).
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from episodes import ShardedSource
from episodes.paths import ensure_writable_dir

from .. import distributed
from ..config import TrainConfig, config_from_dict, read_config_file, save_config
from ..distributed import Ranks
from ..errors import AdaptationError, ConfigError, FewshotError
from ..launch import check_split
from ..meta_optimizer import clip_meta_gradients, fit_schedule
from ..precision import autocast, resolve_precision
from ..scoring import Summary, summarize
from .build import (
    build_fixed_set,
    build_learner_from_config,
    build_optimizer,
    build_train_source,
    configure_backends,
    resolve_device,
    run_identity,
)
from .checkpoint import load_checkpoint, restore_training_state, save_checkpoint
from .clock import TrainingClock
from .metrics_log import MetricsLogger
from .rng import seed_global_rng
from .runlock import RunLock, remove_run_temps

CONFIG_FILE = "config.yaml"
LAST = "last.pt"
BEST = "best.pt"
# keys that may differ between a run's saved config and the config it is resumed with
_RESUMABLE_CHANGES = {"iterations", "device"}


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
    learner: Any = None  # the trained learner (on the training device), for use right after training


def check_writable(out: Path) -> None:
    """Create ``out`` if needed and make sure files can be written there (ConfigError otherwise).

    A folder with no write bits is refused even for root (who could write into it anyway), as on the
    data side; the probe file then catches what mode bits cannot tell (a read-only mount, a full quota).
    """
    ensure_writable_dir(out, error=ConfigError, hint="choose another --out")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"output directory {out} is not writable ({exc.strerror}): choose another --out") from exc


def existing_dir(out: Path) -> bool:
    """``out.is_dir()``, but a folder this user may not look into (``--out /root/runs/x`` for a non-root user:
    ``stat`` fails with EACCES, which ``Path.is_dir`` raises) is a one-line ConfigError, not a traceback."""
    try:
        return out.is_dir()
    except OSError as exc:
        raise ConfigError(f"cannot look into {exc.filename or out} ({exc.strerror}): choose another --out "
                          "(a folder you can write into)") from exc


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(a) | set(b)):
        full = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += _config_diff(va, vb, full + ".")
        elif va != vb and full not in _RESUMABLE_CHANGES:
            diffs.append(f"{full}: {va!r} vs {vb!r}")
    return diffs


def _scalar(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def _all_finite(params: list[torch.Tensor]) -> bool:
    """Whether every entry of ``params`` is finite: one fused max-abs per tensor (no overflow, NaN propagates)."""
    if not params:
        return True
    with torch.no_grad():
        return bool(torch.stack([n.float() for n in torch._foreach_norm(params, float("inf"))]).isfinite().all())


def _better(metric: str, new: float, best: float | None) -> bool:
    if best is None:
        return True
    return new < best if metric == "mse" else new > best


def train(cfg: TrainConfig, out: str | Path, *, resume: bool | None = None, quiet: bool = False,
          tensorboard: bool = True, dist_timeout: float = distributed.DEFAULT_TIMEOUT_S) -> TrainResult:
    """Meta-train ``cfg`` into run directory ``out``.

    ``resume=None`` (default) resumes automatically when ``out/last.pt`` exists; ``True`` requires it;
    ``False`` starts afresh (an existing ``last.pt`` is then an error, so nothing is overwritten by
    accident). Raises FewshotError/DataError (one-line messages) for every expected failure.

    Only one training runs in ``out`` at a time (:class:`RunLock`, released on any exit, even SIGKILL);
    the run holding it first removes the temp files of killed writes there.  Under torchrun the job
    joins its process group first (``dist_timeout``: seconds a collective waits for the other ranks).
    """
    out = Path(out)
    ranks, device = distributed.setup(resolve_device(cfg.device), timeout_s=dist_timeout)
    lock = RunLock(out)
    try:
        result = _train(cfg, out, lock, ranks, device, resume=resume, quiet=quiet, tensorboard=tensorboard)
        distributed.barrier(ranks)  # nobody leaves the group while rank 0 still writes
        return result
    finally:
        lock.release()
        distributed.teardown(ranks)


def _open_run(cfg: TrainConfig, out: Path, lock: RunLock, resume: bool | None) -> dict | None:
    """Rank 0's check of the run folder: lock it if it exists, decide whether to resume, and read and check
    its checkpoint (returned, or None for a new run)."""
    if existing_dir(out):  # lock before reading its checkpoint: another run may be writing there
        check_writable(out)
        lock.acquire()
    last_path = out / LAST
    has_ckpt = last_path.exists()
    if resume is True and not has_ckpt:
        raise ConfigError(f"--resume given but {last_path} does not exist: drop --resume to start a new run")
    if resume is False and has_ckpt:
        raise ConfigError(f"{out} already holds a run ({LAST}): resume it (--resume) or choose another --out")
    if not (has_ckpt and resume is not False):
        return None
    ckpt = load_checkpoint(last_path, expect=run_identity(cfg))
    saved = ckpt["config"]
    if (out / CONFIG_FILE).exists():
        saved = read_config_file(out / CONFIG_FILE).to_dict()
    diffs = _config_diff(saved, cfg.to_dict())
    if diffs:
        raise ConfigError(f"{out} holds a run with another config ({'; '.join(diffs[:3])}): "
                          "resume with the same settings or choose another --out")
    if int(ckpt["iteration"]) > cfg.iterations:
        raise ConfigError(f"checkpoint is at iteration {ckpt['iteration']} > iterations={cfg.iterations}: "
                          "raise --iterations to continue")
    return ckpt


def _claim_new_folder(out: Path, lock: RunLock) -> None:
    if not lock.held:  # a new folder: created (and locked) only now that everything is checked
        check_writable(out)
        lock.acquire()
    remove_run_temps(out, before=lock.acquired_at)


@dataclass
class Divergence:
    """Validation tasks whose adaptation diverged: the support loss ended above its lowest value (their
    predictions then came from the best support-loss step, ``LearnerConfig.best_step``) or became
    non-finite.  Episode indices are those of the fixed validation set."""

    steps: int  # the updates validation asked for
    episodes: list[int]  # diverged episodes, in order
    steps_used: list[int]  # the step each of them predicted with
    nonfinite: list[int]  # episodes with a non-finite support loss
    first_nonfinite_step: int | None

    def metrics(self) -> dict[str, Any]:
        """What the ``val`` metrics line records (at most 20 episode numbers)."""
        out: dict[str, Any] = {"diverged_tasks": len(self.episodes), "nonfinite_tasks": len(self.nonfinite)}
        if self.episodes:
            out["diverged_episodes"] = self.episodes[:20]
            out["diverged_steps_used"] = self.steps_used[:20]
        if self.first_nonfinite_step is not None:
            out["first_nonfinite_step"] = self.first_nonfinite_step
        return out

    def message(self, iteration: int, total: int) -> str:
        shown = ", ".join(f"{e} (step {s})" for e, s in zip(self.episodes[:5], self.steps_used[:5]))
        more = f" and {len(self.episodes) - 5} more" if len(self.episodes) > 5 else ""
        nonfinite = (f" ({len(self.nonfinite)} became non-finite, first at inner step {self.first_nonfinite_step})"
                     if self.nonfinite else "")
        return (f"validation at iteration {iteration}: on {len(self.episodes)} of {total} tasks the support loss "
                f"ended above its lowest value over {self.steps} steps{nonfinite}; they predicted with their "
                f"lowest-support-loss step: episodes {shown}{more}. Training goes on; fewer eval steps "
                "(learner.eval_steps) or a lower inner learning rate avoid it")


def validate(learner: Any, val_set: Any, cfg: TrainConfig, metric: str, ranks: Ranks, *, progress: bool = False):
    """``(summary of metric, Divergence or None)`` over the validation episodes; under torchrun each rank
    evaluates its share of the episodes and the per-episode values are gathered, so the numbers equal
    one process's.  A diverging task never stops training: it is reported."""
    start, stop = ranks.share(val_set.count)
    batches = val_set.batches(cfg.eval_batch, start, stop)
    total = -(-(stop - start) // cfg.eval_batch)
    was_training = learner.training
    learner.eval()
    values, used, nonfinite = [], [], []
    try:
        # a nested bar moves the cursor (ESC [A): only on a terminal, never into a redirected log
        for batch in tqdm(batches, total=total, disable=not progress or not sys.stderr.isatty(), leave=False,
                          unit="batch", desc="validation", dynamic_ncols=True):
            out = learner.evaluate(batch)
            values.append(out[metric].detach().double().cpu().flatten())
            used.append(out["step"].detach().double().cpu().flatten())
            nonfinite.append(out["nonfinite_at"].detach().double().cpu().flatten())
    finally:
        learner.train(was_training)
    empty = torch.zeros(0, dtype=torch.float64)
    mine, steps_used, bad_at = (torch.cat(v) if v else empty for v in (values, used, nonfinite))
    steps_used, bad_at = distributed.gather(steps_used, ranks), distributed.gather(bad_at, ranks)
    mine = distributed.gather(mine, ranks)
    finite = bool(mine.isfinite().all())  # else a diverged task scored mse inf (best_step off): so does the mean
    summary = summarize(mine) if finite else Summary(float("inf"), float("inf"), mine.numel(), float("inf"))
    steps = learner.default_eval_steps
    diverged = ((steps_used != steps) | (bad_at >= 0)).nonzero().flatten().tolist()
    if not diverged:
        return summary, None
    bad = (bad_at >= 0).nonzero().flatten().tolist()
    return summary, Divergence(steps, diverged, [int(steps_used[i]) for i in diverged], bad,
                               int(bad_at[bad].min()) if bad else None)


def _train(cfg: TrainConfig, out: Path, lock: RunLock, ranks: Ranks, device: torch.device, *,
           resume: bool | None, quiet: bool, tensorboard: bool) -> TrainResult:
    last_path, best_path = out / LAST, out / BEST
    quiet = quiet or not ranks.main
    # --- build and check everything before writing anything ---------------------------------------
    ckpt = distributed.from_main(lambda: _open_run(cfg, out, lock, resume), ranks)
    resuming = ckpt is not None
    clock = TrainingClock(int(ckpt["iteration"]) if resuming else 0, processes=ranks.world if ranks.active else 1,
                          device=str(device), earlier=ckpt.get("clock") if resuming else None)
    check_split(cfg.meta_batch, ranks.world)
    configure_backends(cfg)
    # Any: the learner API (meta_loss, evaluate) is not on nn.Module, which build_learner returns
    learner: Any = build_learner_from_config(cfg, device)
    source: Any = build_train_source(cfg, device)
    if ranks.active:
        source = ShardedSource(source, ranks.rank, ranks.world)
        learner.shard_tasks(ranks.rank, ranks.world)
    val_set = build_fixed_set(cfg, "val", count=cfg.val_episodes, device=device) if cfg.val_every else None
    optimizer, scheduler = build_optimizer(learner, cfg)
    distributed.from_main(lambda: _claim_new_folder(out, lock), ranks)  # runs on rank 0 only

    start, best, best_it = 0, None, None
    metric = "mse" if cfg.data.is_regression else "accuracy"
    if ckpt is None:
        seed_global_rng(cfg.seed)
    else:
        start = restore_training_state(ckpt, learner=learner, optimizer=optimizer, scheduler=scheduler,
                                       sources={"train": source})
        fit_schedule(scheduler, start, cfg.iterations)  # --iterations may extend the run
        best = ckpt["extra"].get("best_metric")
        best_it = ckpt["extra"].get("best_iteration")
    logger = None
    if ranks.main:
        save_config(cfg, out / CONFIG_FILE)
        logger = MetricsLogger(out, tensorboard=tensorboard, resume_from=start if resuming else None)

    autocast_dtype = resolve_precision(cfg.precision, device)  # None: float32 (also bf16 on a CPU without it)
    ident = run_identity(cfg)
    plain_cfg = cfg.to_dict()
    written: dict[str, int | None] = {LAST: start if resuming else None, BEST: best_it}

    def kept() -> str:
        """What an error says about the checkpoints on disk (never one that does not exist)."""
        if written[LAST] is not None:
            return f"the last good checkpoint {last_path} (iteration {written[LAST]}) is untouched"
        if written[BEST] is not None and best_path.exists():
            return f"no {LAST} was written yet ({best_path}, iteration {written[BEST]}, is untouched)"
        return "no checkpoint was written"

    def checkpoint(path: Path, iteration: int) -> None:
        if not ranks.main:
            return
        save_checkpoint(path, learner=learner, optimizer=optimizer, scheduler=scheduler,
                        sources={"train": source}, iteration=iteration, config=plain_cfg, identity=ident,
                        extra={"best_metric": best, "best_iteration": best_it, "metric": metric},
                        clock=clock.state(iteration), hint=f"choose another --out ({kept()})")
        written[path.name] = iteration

    def log(kind: str, iteration: int, **values: Any) -> None:
        if logger is None:
            return
        try:
            logger.write(kind, iteration, **values)
        except OSError as exc:
            raise FewshotError(f"cannot append to {logger.path} at iteration {iteration} ({exc.strerror or exc}): "
                               f"training stopped; {kept()}; free disk space or choose another --out, then run "
                               "the command again") from exc

    bar = tqdm(total=cfg.iterations, initial=start, disable=quiet, dynamic_ncols=True, unit="it",
               desc=cfg.preset or "train")
    last_loss: float | None = None
    learner.train()
    params = [p for p in learner.parameters() if p.requires_grad]
    floating_buffers = [b for b in learner.buffers() if b.is_floating_point()]
    try:
        for it in range(start, cfg.iterations):
            iteration = it + 1
            batch = source.sample(cfg.meta_batch)
            if batch.support_x.device != device:
                batch = batch.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            epoch = it // cfg.iterations_per_epoch
            before = [b.clone() for b in floating_buffers] if ranks.active else []
            try:  # task by task: peak memory of one task's graph (same gradients)
                with autocast(device, autocast_dtype):
                    result = learner.meta_backward(batch, epoch=epoch)
            except AdaptationError as exc:
                raise AdaptationError(f"iteration {iteration}: {exc} ({kept()})") from exc
            metrics = {k: _scalar(v) for k, v in (result.metrics or {}).items()}
            loss_value = _scalar(result.loss)
            if ranks.active:  # one meta-batch over all ranks: average gradients, statistics and logged values
                distributed.average_gradients(params, ranks)
                distributed.average_buffers(floating_buffers, before, ranks)
                loss_value = distributed.mean_scalars({"__loss__": loss_value}, ranks)["__loss__"]
                metrics = distributed.mean_scalars(metrics, ranks)
            if not math.isfinite(loss_value):
                raise FewshotError(f"meta-loss is {loss_value} at iteration {iteration}: training stopped; {kept()}; "
                                   "lower optim.lr or learner.inner_lr, or set optim.clip_norm")
            clip_meta_gradients(learner.parameters(), cfg.optim)
            try:
                optimizer.step()
            except RuntimeError as exc:  # a finite but huge optim.lr / weight_decay overflows float32 inside Adam
                if "overflow" not in str(exc):
                    raise
                raise FewshotError(f"the optimizer step of iteration {iteration} overflowed ({exc}): training "
                                   f"stopped; {kept()}; lower optim.lr or optim.weight_decay") from exc
            if not _all_finite(params):  # a finite loss can still give an inf/NaN step: never save it
                raise FewshotError(f"the meta-parameters became non-finite (NaN/inf) in the optimizer step of "
                                   f"iteration {iteration}: training stopped; {kept()}; lower optim.lr or set "
                                   "optim.clip_norm")
            if scheduler is not None:
                scheduler.step()
            last_loss = loss_value
            if iteration % cfg.log_every == 0 or iteration == cfg.iterations:
                log("train", iteration, **{**metrics, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"]})
            bar.update(1)
            post = {"loss": f"{loss_value:.4f}"}
            if metric in metrics:
                post[metric[:3]] = f"{metrics[metric]:.3f}"
            bar.set_postfix(post, refresh=False)
            if val_set is not None and (iteration % cfg.val_every == 0 or iteration == cfg.iterations):
                try:
                    with autocast(device, autocast_dtype):
                        summary, divergence = validate(learner, val_set, cfg, metric, ranks, progress=not quiet)
                except FewshotError as exc:
                    raise type(exc)(f"validation at iteration {iteration} failed: {exc}; {kept()}") from exc
                extra = {}
                if divergence is not None:
                    extra = divergence.metrics()
                    if ranks.main and divergence.nonfinite:  # a mere rise is in the metrics (and AdaptationWarning)
                        tqdm.write(f"warning: {divergence.message(iteration, val_set.count)}", file=sys.stderr)
                log("val", iteration, **{metric: summary.mean, "ci95": summary.ci95, "episodes": summary.n, **extra})
                if _better(metric, summary.mean, best):
                    best, best_it = summary.mean, iteration
                    checkpoint(best_path, iteration)
            if iteration % cfg.checkpoint_every == 0 or iteration == cfg.iterations:
                distributed.check_in_sync(learner, ranks, f"iteration {iteration}")
                checkpoint(last_path, iteration)
                if val_set is None:  # no validation: "best" is the latest
                    checkpoint(best_path, iteration)
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    return TrainResult(out, cfg.iterations, metric, best, best_it, last_loss, start, learner)


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The config of a run directory (``config.yaml``), or ConfigError if it is not a run."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no {CONFIG_FILE}): pass a `fewshot train --out` folder")
    return read_config_file(path)


def config_of_checkpoint(ckpt: dict) -> TrainConfig:
    """The TrainConfig stored inside a checkpoint."""
    return config_from_dict(ckpt["config"], where="checkpoint config")

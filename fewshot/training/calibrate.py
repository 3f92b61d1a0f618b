"""Per-step batch-norm statistics for a model trained with transductive batch norm.

Why: a model meta-trained with ``bn_mode="transductive"`` normalises every forward with the batch's
own statistics, so in eval mode the prediction of one query depends on the other queries (one image
alone is at chance).  Its running statistics mix every inner step and were never read, so
``bn_mode="running"`` on it fails too.  Calibration gives each inner step its own statistics: the
learner adapts to ``tasks`` training tasks with batch statistics, exactly as in transductive
training, and slot ``t`` of every ``StepBatchNorm`` becomes the average over those tasks of the
batch statistics its forward with parameters after ``t`` updates saw (the support forwards for ``t``
below the number of steps, the query forward after the last step).  With ``bn_mode="frozen"`` (or
``"running"`` in eval mode) the learner then normalises with these stored statistics, and each
query's prediction depends only on the support set and that query.

Usage::

    learner = pretrained.load("omniglot-5w1s-maml")
    make_per_step(learner, steps=3)                 # bn_mode="frozen", per_step_bn=True, 4 slots
    calibrate_batchnorm(learner, train_source, tasks=400, steps=3)
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Iterator

import torch

from episodes import EpisodeSampler

from ..checks import check_count
from ..config import TrainConfig, save_config
from ..errors import ConfigError
from ..nn.batchnorm import StepBatchNorm, per_step_batchnorm
from ..scoring import evaluate_learner
from .build import (
    build_fixed_set,
    build_learner_from_config,
    build_optimizer,
    build_train_source,
    load_data_split,
    run_identity,
)
from .checkpoint import TrainingState, save_checkpoint
from .run_folder import BEST, CONFIG_FILE, LAST, check_writable


def step_norm_layers(learner: Any) -> list[tuple[str, StepBatchNorm]]:
    """The learner model's ``StepBatchNorm`` layers that track running statistics, with their
    names."""
    return [(n, m) for n, m in learner.model.named_modules()
            if isinstance(m, StepBatchNorm) and m.track_running_stats]


def make_per_step(learner: Any, steps: int, bn_mode: str = "frozen") -> Any:
    """Give ``learner`` per-step batch norm with ``steps + 1`` slots and ``bn_mode`` (in place).

    The slots start as copies of the old layer; call :func:`calibrate_batchnorm` to fill them.
    Returns the learner's new config (also set on the learner)."""
    check_count(steps, "steps")
    per_step_batchnorm(learner.model, steps + 1)
    learner.model_changed()
    learner.config = dataclasses.replace(learner.config, per_step_bn=True, bn_mode=bn_mode)
    return learner.config


@contextlib.contextmanager
def _calibrating(learner: Any) -> Iterator[list[tuple[str, StepBatchNorm]]]:
    """Batch statistics on every forward (transductive) and momentum 1 (a slot holds the statistics
    of the last batch it saw); the learner's config and the layers' momenta are restored
    afterwards."""
    layers = step_norm_layers(learner)
    saved_config, saved_momenta = learner.config, [m.momentum for _, m in layers]
    learner.config = dataclasses.replace(saved_config, bn_mode="transductive")
    for _, m in layers:
        m.momentum = 1.0
    try:
        yield layers
    finally:
        learner.config = saved_config
        for (_, m), momentum in zip(layers, saved_momenta):
            m.momentum = momentum


def calibrate_batchnorm(learner: Any, source: Any, *, tasks: int, steps: int | None = None,
                        batch_size: int = 25) -> int:
    """Set every per-step slot's running mean/variance to the average, over ``tasks`` tasks drawn
    from ``source``, of the batch statistics its forward saw during a ``steps``-step adaptation
    (default: the learner's eval steps) and the query forward after it.  Returns the number of tasks
    used.

    Slot ``t < steps``: the support forward with parameters after ``t`` updates; slot ``steps``: the
    query forward.  Slots beyond ``steps`` keep their values.  Variances are the unbiased batch
    variances (as ``torch.nn.BatchNorm`` tracks them).  Draws no noise; parameters are not changed.
    Usage: ``calibrate_batchnorm(learner, EpisodeSampler(train, 5, 1, 5, seed=0), tasks=400)``
    """
    check_count(tasks, "tasks")
    check_count(batch_size, "batch_size")
    if not learner.config.per_step_bn:
        raise ConfigError(
            "calibrate_batchnorm needs per-step batch norm: call make_per_step(learner, steps) "
            "first")
    if steps is None:
        steps = learner.config.eval_steps or learner.config.inner_steps
    check_count(steps, "steps")
    with _calibrating(learner) as layers:
        if not layers:
            raise ConfigError(
                "the learner's model has no batch-norm layer with running statistics: "
                "nothing to calibrate")
        too_few = [n for n, m in layers if m.steps < steps + 1]
        if too_few:
            raise ConfigError(f"batch norm '{too_few[0]}' has fewer than {steps + 1} slots: "
                              f"call make_per_step(learner, {steps}) first")
        keys = [f"{n}.{b}" for n, _ in layers for b in ("running_mean", "running_var")]
        sums: dict[str, torch.Tensor] = {}
        done = 0
        with torch.no_grad():
            while done < tasks:
                batch = source.sample(min(batch_size, tasks - done))
                new_bufs = learner.run_batch(batch, learner.task_settings(batch.ways, steps),
                                             sample=False).buffers
                for k in keys:
                    total = new_bufs[k][:, :steps + 1].double().sum(0)
                    sums[k] = total if k not in sums else sums[k] + total
                done += len(batch)
        buffers = dict(learner.model.named_buffers())
        with torch.no_grad():
            for k in keys:
                buffers[k][:steps + 1].copy_((sums[k] / done).to(buffers[k].dtype))
    return done


def transfer_state(source: Any, target: Any) -> None:
    """Copy ``source``'s model state and meta-learned rule parameters into ``target`` (in place).

    Batch-norm layers of ``source`` with fewer slots are first widened to ``target``'s (each new
    slot a copy of the last); the rule's buffers (e.g. a fixed inner learning rate) stay
    ``target``'s, so a config change such as ``learner.inner_lr`` takes effect."""
    slots = max((m.steps for _, m in step_norm_layers(target)), default=1)
    per_step_batchnorm(source.model, slots)
    source.model_changed()
    learned = {n for n, _ in source.named_parameters()}
    taken = {k: v for k, v in source.state_dict().items() if k.startswith("model.") or k in learned}
    target.load_state_dict({**target.state_dict(), **taken}, strict=True)


def calibrated_run(source: Any, cfg: TrainConfig, out: str | Path, *, iteration: int, tasks: int,
                   seed: int,
                   queries: int | None = None, batch_size: int = 25) -> float:
    """Start a run folder ``out`` from ``source`` (a trained learner) with per-step batch norm
    calibrated on ``tasks`` training tasks (:func:`calibrate_batchnorm`, sampled with ``seed``), as
    if ``cfg`` (which must set ``learner.per_step_bn``) had been trained for ``iteration``
    iterations.

    ``out`` then holds ``config.yaml``, ``last.pt`` and ``best.pt`` (validation score recorded), so
    ``fewshot pretrained publish out NAME`` publishes the calibrated weights and ``fewshot train
    out/config.yaml --out out --iterations N`` fine-tunes them (fresh optimizer state; validation
    keeps the better of the two).  Returns the validation score.

    With ``learner.bn_mode="support"`` there are no stored statistics to calibrate (each task's
    support set gives them): the run starts from ``source``'s weights as they are, ready to be
    published or fine-tuned in that mode."""
    support = cfg.learner.config.bn_mode == "support"
    if not support and not cfg.learner.config.per_step_bn:
        raise ConfigError("calibrated_run needs learner.per_step_bn=true in the config: set it")
    learner = build_learner_from_config(cfg, "cpu")
    transfer_state(source, learner)
    d = cfg.data
    if not support:
        steps = learner.config.eval_steps or learner.config.inner_steps
        sampler = EpisodeSampler(load_data_split(cfg, d.train_split), d.ways, d.shots,
                                 queries or d.queries,
                                 seed=seed)
        calibrate_batchnorm(learner, sampler, tasks=tasks, steps=steps, batch_size=batch_size)
    metric = "mse" if d.is_regression else "accuracy"
    _, summary = evaluate_learner(learner,
                                  build_fixed_set(cfg, "val",
                                                  count=cfg.val_episodes).batches(cfg.eval_batch),
                                  metric=metric)
    learner.train()
    optimizer, scheduler = build_optimizer(learner, cfg)
    out = Path(out)
    check_writable(out)
    save_config(cfg, out / CONFIG_FILE)
    extra = {"best_metric": summary.mean, "best_iteration": iteration, "metric": metric}
    for name in (LAST, BEST):
        save_checkpoint(out / name,
                        TrainingState(learner, optimizer, scheduler,
                                      {"train": build_train_source(cfg)}),
                        iteration=iteration, config=cfg.to_dict(),
                        identity=run_identity(cfg), extra=extra)
    return summary.mean

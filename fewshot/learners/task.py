"""One task's run, as the task batching calls it: its tensors (``TaskTensors``), what every task of
a meta-batch shares (``TaskSettings``), what a learner's objective gives back (``Objective``), and
the parts every learner shares: the query metric, evaluation, and ``adapt``'s inner loop.

Why a module of its own: this is the computation the task batching runs per task, the loop calling
it task by task and vmap calling it once over all tasks, so it must be a pure function of its
tensors (no Python branching on their values under vmap).  A learner's own algorithm is its
``GradientLearner.task_objective`` hook (adapt on the support set, then an outer objective on the
query set); evaluation and the metric are the same for every learner and live here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..best_step import choose_best
from ..functional import InnerLoop, InnerLoopResult, LossFn, Params, call, copy_buffers, split_state
from ..precision import float32_outputs
from .bn_forward import NormModeForward
from .result import Adaptation, TaskResult


class TaskTensors(NamedTuple):
    """One task's tensors: the support set, the query set and the rule's noise draw (None for
    deterministic rules)."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    noise: torch.Tensor | None


@dataclass(frozen=True)
class TaskSettings:
    """What every task of a meta-batch shares: ``steps`` inner updates, whether the meta-gradient is
    ``first_order``, the query loss's ``weights`` after each step (MSL; the last is never 0), the
    inner ``loop`` (its ``loss_fn`` is the task loss), the number of ``ways`` (None: regression),
    ``evaluation`` (score the task, with its final support loss, instead of training on it) and
    ``best`` (evaluation: predict with the lowest-support-loss step when adaptation diverged)."""

    steps: int
    first_order: bool
    weights: tuple[float, ...]
    loop: InnerLoop
    ways: int | None
    evaluation: bool = False
    best: bool = False

    @property
    def loss_fn(self) -> LossFn:
        return self.loop.loss_fn


class Objective(NamedTuple):
    """A learner's training objective on one task (``GradientLearner.task_objective``): ``total``,
    the scalar whose gradient w.r.t. the meta-parameters is the learner's meta-gradient; the last
    ``query_loss`` and the query ``outputs`` it came from (scored by ``query_metric``); the support
    losses before each update; the buffer copies after the task; ``extras``, per-task diagnostics
    (iMAML's CG residual) read by ``GradientLearner.batch_metrics``."""

    total: torch.Tensor
    query_loss: torch.Tensor
    outputs: torch.Tensor
    support_losses: torch.Tensor
    buffers: Params
    extras: Params = {}  # never mutated: a learner that adds diagnostics builds its own dict


class Float32Loss:
    """``loss_fn`` applied to float32 outputs: a no-op in float32/float64, a cast under bf16
    autocast."""

    def __init__(self, fn: LossFn) -> None:
        self.fn = fn

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(float32_outputs(out), target)


def query_metric(outputs: torch.Tensor, query_y: torch.Tensor, ways: int | None,
                 query_loss: torch.Tensor) -> torch.Tensor:
    """A task's metric: query accuracy (classification), else the mean squared error (the query loss
    when outputs and targets differ in shape, i.e. a user loss)."""
    outputs = float32_outputs(outputs)
    if ways is not None:
        return (outputs.argmax(-1) == query_y).to(outputs.dtype).mean()
    return F.mse_loss(outputs, query_y) if outputs.shape == query_y.shape else query_loss


def result_of(objective: Objective, task: TaskTensors, settings: TaskSettings,
              step: torch.Tensor | None = None
              ) -> TaskResult:
    """The ``TaskResult`` of a task's objective: its metric taken once, here, for every learner;
    ``step`` = the step whose parameters predicted (default: the last)."""
    if step is None:
        step = torch.full((), settings.steps, dtype=torch.long, device=task.support_x.device)
    metric = query_metric(objective.outputs, task.query_y, settings.ways, objective.query_loss)
    return TaskResult(objective.total, objective.query_loss.detach(), metric.detach(),
                      objective.support_losses,
                      objective.buffers, step, objective.extras)


def maml_objective(forward: NormModeForward, params: Params, buffers: Params, task: TaskTensors,
                   settings: TaskSettings) -> Objective:
    """MAML's objective: ``steps`` differentiable updates on the support set, then the query loss
    after every step with a non-zero weight, summed with those weights (MSL; only the last by
    default)."""
    keep = [t for t, w in enumerate(settings.weights, 1) if w]
    res = settings.loop.run(params, buffers, task.support_x, task.support_y, steps=settings.steps,
                            noise=task.noise, first_order=settings.first_order, keep=keep)
    bufs, total = res.buffers, None
    out = q_loss = None
    for t in keep:
        bufs = copy_buffers(bufs)
        out = forward.query(res.at(t), bufs, task.support_x, task.query_x, forward.bn_step(t))
        q_loss = settings.loss_fn(out, task.query_y)
        weighted = settings.weights[t - 1] * q_loss
        total = weighted if total is None else total + weighted
    # the last weight is never 0
    assert out is not None and q_loss is not None and total is not None
    return Objective(total, q_loss, out, res.losses, bufs)


def evaluate_task(forward: NormModeForward, params: Params, buffers: Params, task: TaskTensors,
                  settings: TaskSettings) -> TaskResult:
    """One task scored as every learner is evaluated: ``steps`` updates on the support set, the
    query loss and metric after the last (or, with ``best``, after the step ``choose_best`` picks),
    and the support losses before each update and after the last."""
    sx, sy, steps, loss_fn = task.support_x, task.support_y, settings.steps, settings.loss_fn
    res = settings.loop.run(params, buffers, sx, sy, steps=steps, noise=task.noise,
                            first_order=True, keep=(),
                            track_best=settings.best)
    step = None
    if settings.best:
        assert res.best is not None
        s_final = final_support_loss(forward, settings.loop, res, sx, sy, steps)
        chosen = choose_best(res.best, res.at(steps), s_final, steps)
        out = forward.at_step({**res.at(steps), **chosen.params}, copy_buffers(res.buffers), sx,
                              task.query_x,
                              chosen.step, steps)
        step = chosen.step
    else:
        s_out, out = forward.joint(res.at(steps), copy_buffers(res.buffers), sx, task.query_x,
                                   forward.bn_step(steps))
        if s_out is not None:  # support mode: the final support loss comes with the query forward
            s_final = loss_fn(s_out, sy).detach().reshape(1)
        else:
            s_final = final_support_loss(forward, settings.loop, res, sx, sy, steps)
    q_loss = loss_fn(out, task.query_y)
    objective = Objective(q_loss, q_loss, out, torch.cat([res.losses, s_final]), res.buffers)
    return result_of(objective, task, settings, step)


def adapt_task(forward: NormModeForward, loop: InnerLoop, sx: torch.Tensor, sy: torch.Tensor, *,
               steps: int,
               first_order: bool, best: bool) -> Adaptation:
    """``adapt``'s inner loop on one task, outside any batching (the caller sets the batch-norm
    mode): the parameters after ``steps`` updates (with ``best``, those of the step ``choose_best``
    picks) and the support losses before each update and after the last."""
    params, buffers = split_state(loop.module)
    res = loop.run(params, buffers, sx, sy, steps=steps, first_order=first_order, keep=(),
                   track_best=best)
    final = final_support_loss(forward, loop, res, sx, sy, steps)
    losses = torch.cat([res.losses, final])
    if not best:
        return Adaptation(res.at(steps), steps, losses)
    assert res.best is not None
    chosen = choose_best(res.best, res.at(steps), final, steps)
    return Adaptation({**res.at(steps), **chosen.params}, int(chosen.step), losses)


def final_support_loss(forward: NormModeForward, loop: InnerLoop, res: InnerLoopResult,
                       sx: torch.Tensor,
                       sy: torch.Tensor, steps: int) -> torch.Tensor:
    """``[1]``: the support loss after the last update (not needed for learning; it shows
    divergence)."""
    with torch.no_grad():
        out = call(loop.module, res.at(steps), copy_buffers(res.buffers), sx,
                   step=forward.bn_step(steps))
        return loop.loss_fn(out, sy).reshape(1)


__all__ = ["Float32Loss", "Objective", "TaskTensors", "TaskSettings", "adapt_task", "evaluate_task",
           "maml_objective",
           "query_metric", "result_of"]

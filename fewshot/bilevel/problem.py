"""The inner problem of a bilevel optimisation: training by a differentiable update rule.

A single, many-shot task's hyperparameters (learning rates, weight decay, example weights, the
training data itself) are learned by the gradient of a validation loss through training.  The
inner problem is that training: ``steps`` updates of the parameters by an update rule
(``fewshot.rules``, e.g. ``SGD``) on a training loss.  Hyperparameters are any floating tensors with
``requires_grad=True`` that the loss or the rule reads: the rule's own parameters (a learnable
learning-rate table, ``SGD(..., learnable=True)``), the parameters of a module the loss reads, or
the training inputs and labels themselves (dataset distillation).

The unroll runs on ``fewshot.recompute``'s checkpointed segments, so reverse-mode through hundreds
or thousands of steps keeps one parameter copy per segment instead of every step's graph.

Usage::

    problem = InnerProblem(loss, SGD(names, lr=0.1, learnable=True), steps=100, x=x_train,
                           y=y_train, hyper=decay_module)
    result = unroll(problem, params, checkpoint=10)    # result.params: after 100 steps
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import nn

from ..checks import check_count
from ..errors import AdaptationError, ConfigError
from ..recompute import Segment, SegmentStart, checkpointed_steps
from ..rules.base import Params, State, UpdateRule

TrainLoss = Callable[[Params, torch.Tensor, torch.Tensor, int], torch.Tensor]
"""``(params, x, y, step) -> scalar``: the training loss at inner step ``step`` (it may pick that
step's mini-batch of ``x``, ``y``)."""


@dataclass(frozen=True)
class InnerProblem:
    """``steps`` updates of a parameter dict by ``rule`` on ``loss(params, x, y, step)``.

    ``x``, ``y``: the training data (they may be hyperparameters: dataset distillation learns
    ``x`` and, with soft labels, ``y``).  ``hyper``: a module whose parameters are hyperparameters
    the loss reads (weight decay, example weights) so that checkpointed segments can pass them
    their gradients; the rule's own parameters (learned learning rates) are passed the same way.
    """

    loss: TrainLoss
    rule: UpdateRule
    steps: int
    x: torch.Tensor
    y: torch.Tensor
    hyper: nn.Module | None = None

    def __post_init__(self) -> None:
        check_count(self.steps, "steps")
        if not callable(self.loss):
            raise ConfigError(f"InnerProblem loss must be a function (params, x, y, step) -> "
                              f"scalar, got {type(self.loss).__name__}")
        if not isinstance(self.rule, UpdateRule):
            raise ConfigError(f"InnerProblem rule must be a fewshot.rules.UpdateRule (e.g. "
                              f"SGD(names, lr=0.1)), got {type(self.rule).__name__}")
        for name, value in (("x", self.x), ("y", self.y)):
            if not isinstance(value, torch.Tensor):
                raise ConfigError(f"InnerProblem {name} must be a tensor, got "
                                  f"{type(value).__name__}")

    def owners(self) -> tuple[nn.Module, ...]:
        """The modules whose parameters the steps read directly (the rule, ``hyper``)."""
        return (self.rule,) if self.hyper is None else (self.rule, self.hyper)


class UnrollResult(NamedTuple):
    """The parameters after the inner problem's steps, and the training loss before each step
    ``[steps]`` (detached)."""

    params: Params
    losses: torch.Tensor


def unroll(problem: InnerProblem, params: Params, *, checkpoint: int = 0,
           truncate: int | None = None) -> UnrollResult:
    """Run ``problem`` from ``params``; the result is differentiable with respect to the
    hyperparameters (and to ``params``) through every step, or through the last ``truncate``
    steps only (the earlier ones run without a graph: truncated reverse-mode).  Under
    ``torch.no_grad()`` every step runs without a graph (values only).

    ``checkpoint`` = k > 0 runs the differentiable steps in segments of k whose graphs are rebuilt
    during backward (``fewshot.recompute``): memory grows by one parameter copy per segment, not by
    every step's graph, for about one more forward pass of compute.  A non-finite training loss
    raises ``AdaptationError`` naming the step.
    """
    check_count(checkpoint, "checkpoint", minimum=0)
    steps = problem.steps
    if truncate is not None:
        check_count(truncate, "truncate")
        if truncate > steps:
            raise ConfigError(f"truncate={truncate} exceeds the inner problem's {steps} steps: "
                              f"use at most {steps} (or None: every step)")
    if not torch.is_grad_enabled():  # values only: every step as the truncated prefix runs
        first_graph = steps
    else:
        first_graph = 0 if truncate is None else steps - truncate
    state: State = problem.rule.init(params)
    losses: list[torch.Tensor] = []
    current = dict(params)
    if first_graph:  # the truncated prefix: values only
        current = {n: p.detach() for n, p in current.items()}
        state = _detached(state)
        current, state, seg_losses = _steps(problem, SegmentStart(current, state, {}, problem.x,
                                                                  problem.y), 0, first_graph,
                                            False)
        current = {n: p.detach() for n, p in current.items()}
        state = _detached(state)
        losses += seg_losses
    # parameters that do not require grad (a fixed init) become leaves here, not inside a segment,
    # so that a recomputed segment knows every tensor its graph starts from
    if first_graph < steps:
        current = {n: p if p.requires_grad else p.detach().requires_grad_()
                   for n, p in current.items()}
    span = checkpoint if checkpoint and torch.is_grad_enabled() else steps
    for start in range(first_graph, steps, span):
        stop = min(start + span, steps)

        def segment(seg: SegmentStart, differentiable: bool, start: int = start,
                    stop: int = stop) -> Segment:
            after, new_state, seg_losses = _steps(problem, seg, start, stop, differentiable)
            return {stop: after}, new_state, {}, seg_losses

        at = SegmentStart(current, state, {}, problem.x, problem.y)
        if span < steps or checkpoint:
            after, state, _, seg_losses = checkpointed_steps(segment, at, problem.owners())
        else:
            after, state, _, seg_losses = segment(at, True)
        current = after[stop]
        losses += seg_losses
    return UnrollResult(current, torch.stack(losses))


def _steps(problem: InnerProblem, seg: SegmentStart, start: int, stop: int,
           differentiable: bool) -> tuple[Params, State, list[torch.Tensor]]:
    """Inner steps ``start..stop-1`` from ``seg`` (whose ``x``, ``y`` are the training data: a
    recomputed segment gets its own copies of them); the gradients keep their graph when
    ``differentiable``."""
    losses = []
    params, state = seg.params, seg.state
    names = list(params)
    for t in range(start, stop):
        with torch.enable_grad():
            leaves = {n: p if p.requires_grad else p.detach().requires_grad_() for n, p in
                      params.items()}
            loss = problem.loss(leaves, seg.x, seg.y, t)
            if loss.dim() != 0:
                raise ConfigError(f"the inner training loss must be a scalar, got shape "
                                  f"{tuple(loss.shape)}: reduce it (e.g. .mean())")
            if not bool(torch.isfinite(loss.detach())):
                raise AdaptationError(f"the inner problem diverged: its training loss at step "
                                      f"{t + 1} of {problem.steps} is {float(loss.detach())}: "
                                      "lower the learning rate or the number of steps, or "
                                      "bound the hyperparameters that scale the training loss")
            grads = torch.autograd.grad(loss, [leaves[n] for n in names],
                                        create_graph=differentiable)
        params, state = problem.rule.step(dict(zip(names, grads)), state, leaves, step=t,
                                          loss=loss)
        if not differentiable:
            params = {n: p.detach() for n, p in params.items()}
        losses.append(loss.detach())
    return params, state, losses


def _detached(state: State) -> State:
    """The rule state with every tensor detached (the truncated prefix keeps no graph)."""
    return torch.utils._pytree.tree_map(
        lambda v: v.detach() if isinstance(v, torch.Tensor) else v, state)

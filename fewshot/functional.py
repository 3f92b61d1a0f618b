"""Differentiable parameter updates over explicit parameter dicts (``torch.func.functional_call``).

Usage::

    params, buffers = split_state(model)
    names = adaptable_names(model)                       # all but norm-layer affine params
    loop = InnerLoop(model, SGD(names, lr=0.4), names, F.cross_entropy)
    out = loop.run(params, buffers, sx, sy, steps=1)
    logits = call(model, out.params[-1], out.buffers, qx, step=1)

The inner loop is one implementation for every learner and for both task-batching paths: gradients
come from ``torch.func.grad_and_value`` (so the same code runs per task in a Python loop or batched
under ``torch.func.vmap``), and an update rule (``fewshot.rules``) turns them into updates.  Second
order: the gradients keep their graph, so the outer ``backward`` differentiates through the rule.
First order: the gradients are detached before the rule sees them, for every rule (the update still
depends on the parameters and on the rule's own meta-parameters).  Buffers are copied before every
forward that may write them, so the caller's tensors are never modified.

Neighbours: ``fewshot.recompute`` runs the steps checkpointed (``InnerLoop(checkpoint=k)``) and
``fewshot.func_transforms`` answers "inside a ``torch.func`` transform?".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vjp

from .best_step import BestSoFar
from .checks import check_count
from .errors import ConfigError, FewshotError
from .func_transforms import under_transform
from .nn.batchnorm import inner_step, is_norm_layer
from .recompute import Segment, SegmentStart, checkpointed_steps
from .rules.base import Params, State, UpdateRule
from .rules.curvature import HVP, providing_hvp

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def split_state(module: nn.Module) -> tuple[Params, Params]:
    """The module's trainable parameters and its buffers as two name -> tensor dicts (no copies).

    Usage: ``params, buffers = split_state(model)``
    """
    params: Params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    buffers = {n: b for n, b in module.named_buffers()}
    return params, buffers


def norm_param_names(module: nn.Module) -> set[str]:
    """Names of parameters that belong to normalisation layers (batch/instance/group/layer norm)."""
    names: set[str] = set()
    for mod_name, mod in module.named_modules():
        if is_norm_layer(mod):
            for p_name, _ in mod.named_parameters(recurse=False):
                names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return names


def adaptable_names(module: nn.Module, *, adapt_norm: bool = False,
                    exclude: Sequence[str] = ()) -> list[str]:
    """Names of the trainable parameters the inner loop adapts, in ``named_parameters`` order.

    Norm-layer affine parameters are left out unless ``adapt_norm``; names starting with any prefix
    in ``exclude`` are left out.  Usage: ``adaptable_names(model, exclude=("features.",))``
    """
    norm = set() if adapt_norm else norm_param_names(module)
    return [n for n, p in module.named_parameters()
            if p.requires_grad and n not in norm and not any(n.startswith(e) for e in exclude)]


def copy_buffers(buffers: Mapping[str, torch.Tensor]) -> Params:
    """Independent copies of buffers (in-place updates on them never reach the originals)."""
    return {k: v.clone() for k, v in buffers.items()}


def call(module: nn.Module, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor],
         *args: torch.Tensor, step: int | None = None, **kwargs) -> torch.Tensor:
    """Run ``module`` with the given parameters and buffers (buffers may be updated in place).

    ``step`` selects the per-step batch-norm slot (``inner_step``).  Usage: ``call(model, p, b, x,
    step=0)``
    """
    state = {**buffers, **params}
    if step is None:
        return functional_call(module, state, args, kwargs, strict=False)
    with inner_step(step):
        return functional_call(module, state, args, kwargs, strict=False)


def value_and_grads(f: Callable[[Params], tuple[torch.Tensor, Any]], params: Params, *,
                    create_graph: bool = False, retain_graph: bool = False
                    ) -> tuple[torch.Tensor, Any, Params]:
    """``(value, aux, grads)`` of ``f(params) -> (scalar, aux)`` with respect to every tensor of
    ``params``: the one place that chooses how a gradient is taken.

    Inside a ``torch.func`` transform (the vmap path) by ``grad_and_value``; outside (the per-task
    loop) by ``torch.autograd.grad``, which gives the same numbers without functorch's per-op
    wrapping and, without ``create_graph``, builds no double-backward graph at all.  Outside
    transforms a tensor of ``params`` that requires grad is differentiated in place (its graph
    kept), any other through a fresh leaf; the gradients keep their graph only with
    ``create_graph`` (inside a transform, always).  ``retain_graph`` keeps ``f``'s graph for a
    later backward of ``value``.
    """
    if under_transform():
        grads, (value, aux) = grad_and_value(f, has_aux=True)(dict(params))
        return value, aux, grads
    with torch.enable_grad():  # also under no_grad (evaluation): the inner loop needs gradients
        leaves = {n: p if p.requires_grad else p.detach().requires_grad_()
                  for n, p in params.items()}
        value, aux = f(leaves)
        grads = torch.autograd.grad(value, list(leaves.values()), create_graph=create_graph,
                                    retain_graph=retain_graph or create_graph)
    return value, aux, dict(zip(leaves, grads))


def value_grads_and_hvp(f: Callable[[Params], tuple[torch.Tensor, Any]], params: Params, *,
                        differentiable: bool = True) -> tuple[torch.Tensor, Any, Params, HVP]:
    """``value_and_grads`` plus ``v -> H v``, the Hessian-vector product of ``f``'s value at
    ``params``, reverse over reverse: the gradient's graph is built once and every product is one
    backward of it.  Outside transforms by double backward through ``torch.autograd.grad``; inside
    by ``torch.func.vjp`` of ``grad_and_value`` (why these two: bench/results/imaml_costs.md, where
    the double backward is the faster on the loop and both beat forward over reverse).  The
    gradients are differentiable; the products too unless ``differentiable=False`` (a caller that
    only solves with them)."""
    if under_transform():
        def g(p: Params) -> tuple[Params, tuple[torch.Tensor, Any]]:
            return grad_and_value(f, has_aux=True)(p)

        with torch.enable_grad():
            grads, product, (value, aux) = vjp(g, dict(params), has_aux=True)  # type: ignore[misc]

        def hvp_transformed(v: Params) -> Params:
            with torch.enable_grad():
                out = product({n: v[n] for n in grads})[0]
            return out if differentiable else {n: h.detach() for n, h in out.items()}

        return value, aux, grads, hvp_transformed
    leaves = {n: p if p.requires_grad else p.detach().requires_grad_() for n, p in params.items()}
    value, aux, grads = value_and_grads(f, leaves, create_graph=True)
    names = list(grads)

    def hvp(v: Params) -> Params:
        with torch.enable_grad():
            out = torch.autograd.grad([grads[n] for n in names], [leaves[n] for n in names],
                                      [v[n] for n in names], retain_graph=True,
                                      create_graph=differentiable)
        return dict(zip(names, out))

    return value, aux, grads, hvp


def grads_and_loss(module: nn.Module, params: Params, buffers: Mapping[str, torch.Tensor],
                   x: torch.Tensor, y: torch.Tensor, *, loss_fn: LossFn, names: Sequence[str],
                   step: int = 0, create_graph: bool = True) -> tuple[Params, torch.Tensor, Params]:
    """Gradients of ``loss_fn(model(x), y)`` w.r.t. ``params[names]``, the loss, and the updated
    buffer copies (``value_and_grads``: differentiable only with ``create_graph``, and always
    inside a transform)."""
    f = _support_loss(module, params, names, x, y, loss_fn, step, buffers)
    loss, new_buffers, grads = value_and_grads(f, {n: params[n] for n in names},
                                               create_graph=create_graph)
    return grads, loss, new_buffers


def _support_loss(module: nn.Module, params: Params, names: Sequence[str], x: torch.Tensor,
                  y: torch.Tensor, loss_fn: LossFn, step: int, buffers: Mapping[str, torch.Tensor]
                  ) -> Callable[[Params], tuple[torch.Tensor, Params]]:
    """``adapted -> (loss, buffers after the forward)``: the loss as a function of
    ``params[names]`` (the other parameters fixed), on copies of the buffers."""
    wanted = set(names)
    fixed = {k: v for k, v in params.items() if k not in wanted}

    def f(adapted: Params) -> tuple[torch.Tensor, Params]:
        bufs = copy_buffers(buffers)
        return loss_fn(call(module, {**fixed, **adapted}, bufs, x, step=step), y), bufs

    return f


def grads_loss_and_hvp(module: nn.Module, params: Params, buffers: Mapping[str, torch.Tensor],
                       x: torch.Tensor, y: torch.Tensor, *, loss_fn: LossFn, names: Sequence[str],
                       step: int = 0) -> tuple[Params, torch.Tensor, Params, HVP]:
    """``grads_and_loss`` plus ``v -> H v``, the support loss's Hessian-vector product at
    ``params`` (``value_grads_and_hvp``).  Gradients and products are differentiable (a caller
    wanting first order detaches them)."""
    f = _support_loss(module, params, names, x, y, loss_fn, step, buffers)
    loss, new_buffers, grads, hvp = value_grads_and_hvp(f, {n: params[n] for n in names})
    return grads, loss, new_buffers, hvp


@dataclass
class InnerLoopResult:
    """``params[t]`` = parameters after ``t`` updates (``params[0]`` is the input; ``None`` for a
    step the caller did not ``keep``), ``buffers`` after the last support forward, ``losses`` =
    support loss before each update ``[steps]``, ``state`` = the rule's state after the last
    update."""

    params: list[Params | None]
    buffers: Params
    losses: torch.Tensor
    state: State
    best: BestSoFar | None = None

    def at(self, step: int) -> Params:
        """``params[step]``, or a one-line error when that step was not kept."""
        kept = self.params[step]
        if kept is None:
            raise FewshotError(f"the parameters after {step} updates were not kept: "
                               f"pass keep=[..., {step}] to InnerLoop.run")
        return kept


@dataclass(frozen=True)
class InnerLoop:
    """What every inner loop of a learner shares: the ``module`` run functionally, the update
    ``rule``, the parameter ``names`` it adapts, the support ``loss_fn``, whether each step has its
    own batch-norm slot (``per_step_bn``) and the recomputation segment length (``checkpoint``).

    Usage: ``InnerLoop(model, SGD(names, lr=0.4), names, F.cross_entropy).run(params, buffers, sx,
    sy, steps=1)``
    """

    module: nn.Module
    rule: UpdateRule
    names: Sequence[str]
    loss_fn: LossFn
    per_step_bn: bool = True
    checkpoint: int = 0

    def run(self, params: Params, buffers: Mapping[str, torch.Tensor], x: torch.Tensor,
            y: torch.Tensor, *,
            steps: int, noise: torch.Tensor | None = None, first_order: bool = False,
            keep: Collection[int] | None = None, track_best: bool = False) -> InnerLoopResult:
        """``steps`` differentiable updates of ``params[names]`` by ``rule`` on the support set
        ``(x, y)``.

        Step ``t`` runs the model under ``inner_step(t)`` (under ``inner_step(0)`` for every step
        when ``per_step_bn`` is False).  The rule starts from ``rule.init(params, noise)``.  Loss
        values are returned, not checked (so the same code runs under ``vmap``); callers check them.

        ``keep``: the steps whose parameters the caller needs (None: all); the others are ``None``
        in ``params``, so they cost no memory where no graph holds them (first order, evaluation,
        checkpointing).  The input and the last step are always kept.

        ``checkpoint`` = k > 0 (with gradients enabled, outside ``torch.func`` transforms): the
        steps run in segments of k without storing their graphs; backward reruns one segment at a
        time from its stored inputs (parameters, rule state, buffers).  Memory then grows by one
        parameter copy per segment instead of every step's activations and double-backward graph,
        for about one more first-order pass of compute; the gradients are the same
        (``fewshot.recompute``).

        ``track_best``: also return, in ``best``, the parameters with the lowest support loss among
        those the loop evaluated (every step's input; with ``checkpoint``, each segment's input), at
        the cost of one more parameter copy; ``choose_best`` weighs them against the last step's.
        """
        check_count(self.checkpoint, "checkpoint", minimum=0)
        kept = set(range(steps + 1)) if keep is None else {int(t) for t in keep} | {0, steps}
        if not kept <= set(range(steps + 1)):
            raise ConfigError(f"keep must name steps in 0..{steps}, got {sorted(kept)}")
        state = self.rule.init(params, noise)
        history: list[Params | None] = [params] + [None] * steps
        losses: list[torch.Tensor] = []
        at = SegmentStart(params, state, dict(buffers), x, y)
        recompute = self.checkpoint > 0 and torch.is_grad_enabled()
        if recompute and under_transform():
            raise ConfigError(
                "checkpointed inner loops cannot run inside torch.func transforms (vmap): "
                "use the per-task loop (task_batching='loop') or checkpoint=0")
        span = self.checkpoint if recompute else (1 if track_best else max(steps, 1))
        best: BestSoFar | None = None
        for start in range(0, steps, span):
            stop = min(start + span, steps)

            def segment(seg: SegmentStart, differentiable: bool, start: int = start,
                        stop: int = stop) -> Segment:
                return self._steps(seg, start, stop, first_order=first_order, keep=kept,
                                   create_graph=differentiable and not first_order)

            if recompute:
                after, state, bufs, seg_losses = checkpointed_steps(segment, at,
                                                                    (self.module, self.rule))
            else:
                after, state, bufs, seg_losses = segment(at, True)
            # the segment's input and its support loss (the loss before its first update)
            if track_best:
                if best is None:
                    best = BestSoFar({n: at.params[n] for n in self.names}, seg_losses[0],
                                     torch.zeros((), dtype=torch.long, device=seg_losses[0].device))
                else:
                    best = best.offer(at.params, seg_losses[0], start)
            for t, p in after.items():
                if t in kept:  # segment ends the caller did not ask for are not held
                    history[t] = p
            at = SegmentStart(after[stop], state, bufs, x, y)
            losses += seg_losses
        return InnerLoopResult(history, at.buffers,
                               torch.stack(losses) if losses else torch.zeros(0), at.state,
                               best)

    def _steps(self, seg: SegmentStart, start: int, stop: int, *, first_order: bool,
               keep: Collection[int],
               create_graph: bool) -> Segment:
        """Steps ``start..stop-1`` from ``seg``: the parameters after the kept steps (and after
        ``stop``), the rule state, the buffers and the detached support losses."""
        after: dict[int, Params] = {}
        losses = []
        current, state, bufs = seg.params, seg.state, seg.buffers
        for t in range(start, stop):
            bn_step = t if self.per_step_bn else 0
            hvp: HVP | None = None
            # a curvature rule (fewshot.rules.curvature): products with the gradients
            if self.rule.needs_hvp:
                grads, loss, bufs, hvp = grads_loss_and_hvp(self.module, current, bufs, seg.x,
                                                            seg.y,
                                                            loss_fn=self.loss_fn, names=self.names,
                                                            step=bn_step)
            else:
                grads, loss, bufs = grads_and_loss(self.module, current, bufs, seg.x, seg.y,
                                                   loss_fn=self.loss_fn,
                                                   names=self.names, step=bn_step,
                                                   create_graph=create_graph)
            if first_order:
                grads = {n: g.detach() for n, g in grads.items()}
                hvp = None if hvp is None else _detached(hvp)
            with providing_hvp(hvp):
                current, state = self.rule.step(grads, state, current, step=t, loss=loss)
            if t + 1 in keep or t + 1 == stop:
                after[t + 1] = current
            losses.append(loss.detach())
        return after, state, bufs, losses


def _detached(hvp: HVP) -> HVP:
    """``hvp`` with its products detached (first order: no graph back to the parameters)."""
    return lambda v: {n: h.detach() for n, h in hvp(v).items()}


def first_nonfinite_step(losses: torch.Tensor) -> int | None:
    """Index of the first non-finite entry of a ``[..., steps]`` loss tensor, or None if all are
    finite."""
    bad = ~torch.isfinite(losses.detach())
    if not bool(bad.any()):
        return None
    steps_bad = bad.reshape(-1, bad.shape[-1]).any(0)
    return int(torch.nonzero(steps_bad)[0].item())


__all__ = ["InnerLoopResult", "LossFn", "Params", "State", "adaptable_names", "call",
           "copy_buffers",
           "first_nonfinite_step", "grads_and_loss", "grads_loss_and_hvp", "InnerLoop",
           "norm_param_names", "split_state"]

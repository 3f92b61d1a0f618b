"""Differentiable parameter updates over explicit parameter dicts (``torch.func.functional_call``).

Usage::

    params, buffers = split_state(model)
    names = adaptable_names(model)                       # all but norm-layer affine params
    out = inner_loop(model, params, buffers, sx, sy, loss_fn=F.cross_entropy, steps=1,
                     rule=SGD(names, lr=0.4), names=names)
    logits = call(model, out.params[-1], out.buffers, qx, step=1)

The inner loop is one implementation for every learner and for both task-batching paths: gradients
come from ``torch.func.grad_and_value`` (so the same code runs per task in a Python loop or batched
under ``torch.func.vmap``), and an update rule (``fewshot.rules``) turns them into updates.  Second
order: the gradients keep their graph, so the outer ``backward`` differentiates through the rule.
First order: the gradients are detached before the rule sees them, for every rule (the update still
depends on the parameters and on the rule's own meta-parameters).  Buffers are copied before every
forward that may write them, so the caller's tensors are never modified.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
from torch.func import functional_call, grad_and_value

from .nn.batchnorm import inner_step, is_norm_layer
from .rules.base import Params, State, UpdateRule, apply_updates

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


def adaptable_names(module: nn.Module, *, adapt_norm: bool = False, exclude: Sequence[str] = ()) -> list[str]:
    """Names of the trainable parameters the inner loop adapts, in ``named_parameters`` order.

    Norm-layer affine parameters are left out unless ``adapt_norm``; names starting with any prefix in
    ``exclude`` are left out.  Usage: ``adaptable_names(model, exclude=("features.",))``
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

    ``step`` selects the per-step batch-norm slot (``inner_step``).  Usage: ``call(model, p, b, x, step=0)``
    """
    state = {**buffers, **params}
    if step is None:
        return functional_call(module, state, args, kwargs, strict=False)
    with inner_step(step):
        return functional_call(module, state, args, kwargs, strict=False)


def loss_and_grads(module: nn.Module, params: Params, buffers: Mapping[str, torch.Tensor], x: torch.Tensor,
                   y: torch.Tensor, *, loss_fn: LossFn, names: Sequence[str], step: int = 0,
                   create_graph: bool = True) -> tuple[Params, torch.Tensor, Params]:
    """Gradients of ``loss_fn(model(x), y)`` w.r.t. ``params[names]``, the loss, and the updated buffer copies.

    Inside a ``torch.func`` transform (the vmap path) the gradients come from ``grad_and_value``; outside
    (the per-task loop) from ``torch.autograd.grad``, which gives the same numbers without functorch's
    per-op wrapping, and with ``create_graph=False`` (first order) builds no double-backward graph at all.
    The gradients are differentiable only when ``create_graph`` is True (and always inside a transform).
    """
    wanted = set(names)
    fixed = {k: v for k, v in params.items() if k not in wanted}
    if retrieve_all_functorch_interpreters():
        def f(adapted: Params, bufs: Mapping[str, torch.Tensor]):
            bufs = copy_buffers(bufs)
            out = call(module, {**fixed, **adapted}, bufs, x, step=step)
            return loss_fn(out, y), bufs

        grads, (loss, new_buffers) = grad_and_value(f, has_aux=True)({n: params[n] for n in names}, dict(buffers))
        return grads, loss, new_buffers
    with torch.enable_grad():  # also under no_grad (evaluation): the inner loop needs support gradients
        adapted = {n: params[n] if params[n].requires_grad else params[n].detach().requires_grad_() for n in names}
        new_buffers = copy_buffers(buffers)
        loss = loss_fn(call(module, {**fixed, **adapted}, new_buffers, x, step=step), y)
        grads = torch.autograd.grad(loss, list(adapted.values()), create_graph=create_graph)
    return dict(zip(names, grads)), loss, new_buffers


@dataclass
class InnerLoopResult:
    """``params[t]`` = parameters after ``t`` updates (``params[0]`` is the input), ``buffers`` after the
    last support forward, ``losses`` = support loss before each update ``[steps]``, ``state`` = the
    rule's state after the last update."""

    params: list[Params]
    buffers: Params
    losses: torch.Tensor
    state: State


def inner_loop(module: nn.Module, params: Params, buffers: Mapping[str, torch.Tensor], x: torch.Tensor,
               y: torch.Tensor, *, loss_fn: LossFn, steps: int, rule: UpdateRule, names: Sequence[str],
               state: State | None = None, noise: torch.Tensor | None = None, first_order: bool = False,
               per_step_bn: bool = True) -> InnerLoopResult:
    """``steps`` differentiable updates of ``params[names]`` by ``rule`` on the support set ``(x, y)``.

    Step ``t`` runs the model under ``inner_step(t)`` (under ``inner_step(0)`` for every step when
    ``per_step_bn`` is False).  ``state`` defaults to ``rule.init(params, noise)``.  Loss values are
    returned, not checked (so the same code runs under ``vmap``); callers check them.
    """
    names = list(names)
    history = [params]
    losses = []
    current, bufs = params, dict(buffers)
    if state is None:
        state = rule.init(params, noise)
    for t in range(steps):
        grads, loss, bufs = loss_and_grads(module, current, bufs, x, y, loss_fn=loss_fn, names=names,
                                           step=t if per_step_bn else 0, create_graph=not first_order)
        if first_order:
            grads = {n: g.detach() for n, g in grads.items()}
        updates, state = rule(grads, state, current, step=t, loss=loss)
        current = apply_updates(current, updates)
        history.append(current)
        losses.append(loss.detach())
    return InnerLoopResult(history, bufs, torch.stack(losses) if losses else torch.zeros(0), state)


def first_nonfinite_step(losses: torch.Tensor) -> int | None:
    """Index of the first non-finite entry of a ``[..., steps]`` loss tensor, or None if all are finite."""
    bad = ~torch.isfinite(losses.detach())
    if not bool(bad.any()):
        return None
    steps_bad = bad.reshape(-1, bad.shape[-1]).any(0)
    return int(torch.nonzero(steps_bad)[0].item())


def msl_weights(steps: int, epoch: int, msl_epochs: int) -> list[float]:
    """MAML++ multi-step-loss weights for ``steps`` inner steps at ``epoch`` (annealed over ``msl_epochs``).

    Earlier steps: ``max(1/N - e/(N*E), 0.03/N)``; last: ``min(1/N + e(N-1)/(N*E), 1 - (N-1)*0.03/N)``.
    Usage: ``msl_weights(5, epoch=3, msl_epochs=10)``
    """
    n, e, big_e = steps, max(epoch, 0), max(msl_epochs, 1)
    if n == 1:
        return [1.0]
    decay = 1.0 / n - e / (n * big_e)
    early = max(decay, 0.03 / n)
    last = min(1.0 / n + e * (n - 1) / (n * big_e), 1.0 - (n - 1) * 0.03 / n)
    weights = [early] * (n - 1) + [last]
    assert math.isfinite(sum(weights))
    return weights

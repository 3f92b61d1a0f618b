"""Checkpointed inner-loop steps: values forward, the graph rebuilt in backward
(``InnerLoop(checkpoint=k)``).

The inner loop runs its steps in segments of k; each segment goes through ``_Recompute``, one custom
autograd Function that computes the segment's values only (no graph is stored) and, in backward,
reruns the segment with its graph (under the forward's CPU/device RNG states, autocast settings and
module ``training`` flags) and back-propagates through it.  The gradients are the stored loop's,
while memory grows by one parameter copy per segment instead of every step's activations and
double-backward graph.  Per-task loop only: custom Functions do not compose with ``vmap``.

Slot layout (how tensors cross the Function boundary, ``checkpointed_steps``):

* ``slots`` = the segment's inputs in a fixed order: the parameters (in ``current``'s key order),
  then the leaves of the flattened rule state (``tree_flatten``), then the support ``x`` and ``y``.
* ``diff_at`` = the positions of the slots that require grad; those tensors are the Function's
  explicit inputs (``_Recompute.apply(run, len(diff_at), x, *inputs, *extra)``), so backward can
  return their gradients.  ``extra`` = the module's and the rule's own parameters that require grad
  and are not already a slot (a learned learning rate, a fixed layer): the steps read them directly,
  so they are inputs too.  Every other slot (labels, integer state, frozen tensors) and the buffers
  are constants of the segment (never written: the steps copy buffers).
* The outputs are two flat lists: ``diff`` (floating-point tensors the segment computed: the
  parameters after each kept step, then the new state's floating leaves; differentiable) and
  ``rest`` (the buffers after the segment, its support losses, the state's integer leaves; marked
  non-differentiable).
* ``layout`` (filled by the first, values-only run; positions and names only, no tensors, so that
  no recomputed graph outlives its backward) says where each result lives: for the parameters
  ``(step, name)`` and for each state leaf one of ``("slot", i)`` (an input passed through
  unchanged: it is not re-emitted, so its identity and graph are kept), ``("diff", j)``,
  ``("rest", j)`` or ``("const", value)`` (a non-tensor leaf).  The segment's result is rebuilt from
  ``layout`` and the Function's outputs.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils._pytree import tree_flatten, tree_unflatten
from torch.utils.checkpoint import get_device_states, set_device_states

from .errors import ConfigError
from .rules.base import Params, State


class SegmentStart(NamedTuple):
    """Where a segment of inner-loop steps starts: the parameters, the rule state, the buffers and
    the support set ``(x, y)``."""

    params: Params
    state: State
    buffers: Params
    x: torch.Tensor
    y: torch.Tensor


Segment = tuple[dict[int, Params], State, Params, list[torch.Tensor]]
"""A segment's result: the parameters after its kept steps (and its last), the rule state, the
buffers and the detached support losses."""
RunSegment = Callable[[SegmentStart, bool], Segment]
"""``(start, differentiable) -> Segment``: the inner loop's plain steps of one segment, building
their graph only when ``differentiable``."""


def checkpointed_steps(run_segment: RunSegment, start: SegmentStart,
                       owners: Sequence[nn.Module]) -> Segment:
    """``run_segment`` from ``start`` through ``_Recompute``.  The segment's tensors that can carry
    gradients (parameters, rule state and inputs that require grad) go in as explicit inputs, and so
    do the ``owners``' own parameters (the model's and the rule's, which the steps may read
    directly: learned learning rates, fixed layers); buffers, labels and the rest are constants of
    the segment (never written: steps copy buffers).  The owners' ``training`` flags are restored
    for the rerun. What the segment returns is described by ``layout`` (the module docstring's slot
    layout)."""
    keys = list(start.params)
    leaves, spec = tree_flatten(start.state)
    slots: list[Any] = [start.params[k] for k in keys] + list(leaves) + [start.x, start.y]
    diff_at = [i for i, v in enumerate(slots) if isinstance(v, torch.Tensor) and v.requires_grad]
    seen = {id(slots[i]) for i in diff_at}
    extra = []  # each tensor once, also when one owner holds another (a rule inside a module)
    for owner in owners:
        for p in owner.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                extra.append(p)
    training = [(m, m.training) for owner in owners for m in owner.modules()]
    layout: dict[str, Any] = {}

    def run(inputs: list[torch.Tensor], differentiable: bool) -> tuple[list[torch.Tensor],
                                                                       list[torch.Tensor]]:
        values = list(slots)
        for i, v in zip(diff_at, inputs):
            values[i] = v
        p_in = dict(zip(keys, values[:len(keys)]))
        s_in = tree_unflatten(values[len(keys):len(keys) + len(leaves)], spec)
        with _training_flags(training):
            after, s_out, b_out, seg_losses = run_segment(
                SegmentStart(p_in, s_in, start.buffers, values[-2], values[-1]), differentiable)
        # a tensor passed through is not re-emitted
        slot_of = {id(v): i for i, v in enumerate(values)}
        s_leaves, s_spec = tree_flatten(s_out)
        diff: list[torch.Tensor] = []
        rest: list[torch.Tensor] = [b_out[k] for k in b_out] + seg_losses
        p_where, s_where = {}, []
        for t in sorted(after):
            for k in keys:
                v = after[t][k]
                if id(v) in slot_of:
                    p_where[t, k] = ("slot", slot_of[id(v)])
                else:
                    p_where[t, k] = ("diff", len(diff))
                    diff.append(v)
        for v in s_leaves:
            if not isinstance(v, torch.Tensor):
                s_where.append(("const", v))
            elif id(v) in slot_of:
                s_where.append(("slot", slot_of[id(v)]))
            elif v.is_floating_point() or v.is_complex():
                s_where.append(("diff", len(diff)))
                diff.append(v)
            else:
                s_where.append(("rest", len(rest)))
                rest.append(v)
        if not differentiable:  # the first (values-only) run describes the outputs
            layout.update(p_where=p_where, s_where=s_where, s_spec=s_spec, b_keys=list(b_out),
                          n_losses=len(seg_losses), steps=sorted(after))
        return diff, rest

    outs = _Recompute.apply(run, len(diff_at), start.x, *[slots[i] for i in diff_at], *extra)
    n_diff = sum(w[0] == "diff" for w in (*layout["p_where"].values(), *layout["s_where"]))
    diff, rest = list(outs[:n_diff]), list(outs[n_diff:])

    def get(where: tuple[str, Any]) -> Any:
        kind, at = where
        return {"slot": lambda: slots[at], "diff": lambda: diff[at], "rest": lambda: rest[at],
                "const": lambda: at}[kind]()

    after = {t: {k: get(layout["p_where"][t, k]) for k in keys} for t in layout["steps"]}
    new_state = tree_unflatten([get(w) for w in layout["s_where"]], layout["s_spec"])
    n_b = len(layout["b_keys"])
    return after, new_state, dict(zip(layout["b_keys"], rest[:n_b])), rest[n_b:n_b
                                                                           + layout["n_losses"]]


@contextlib.contextmanager
def _training_flags(flags: list[tuple[nn.Module, bool]]) -> Iterator[None]:
    """The modules' ``training`` flags as they were when the segment first ran (backward may
    recompute it outside the learner's ``norm_training`` block)."""
    saved = [(m, m.training) for m, _ in flags]
    for m, flag in flags:
        m.training = flag
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


class _Recompute(torch.autograd.Function):
    """Run ``run(inputs, False)`` for its values only; backward reruns ``run(inputs, True)`` (the
    graph the plain loop would have kept, under the same RNG, autocast and module flags) and
    back-propagates through it, so the gradients are those of the plain loop.  Not differentiable
    twice."""

    @staticmethod
    def forward(ctx, run, n_inputs: int, like: torch.Tensor, *args: torch.Tensor):
        ctx.run, ctx.n_inputs = run, n_inputs
        ctx.device_type = like.device.type
        ctx.cpu_rng = torch.get_rng_state()
        ctx.devices, ctx.device_rng = get_device_states(like)
        ctx.autocast = torch.is_autocast_enabled(like.device.type), torch.get_autocast_dtype(
            like.device.type)
        ctx.save_for_backward(*args[:n_inputs])
        # the module's and the rule's own parameters, kept as the very tensors the rerun reads (a
        # saved tensor comes back as another object under saved-tensor hooks, e.g.
        # torch.autograd.graph.save_on_cpu, and could not be differentiated against): leaves, so
        # holding them makes no reference cycle
        ctx.extra = args[n_inputs:]
        ctx.set_materialize_grads(False)
        diff, rest = run([a.detach() for a in args[:n_inputs]], False)
        ctx.n_diff = len(diff)
        rest = [r.detach() for r in rest]
        ctx.mark_non_differentiable(*rest)
        return (*[d.detach() for d in diff], *rest)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs: torch.Tensor | None):
        inputs = [a.detach().requires_grad_(a.requires_grad) for a in ctx.saved_tensors]
        extra = list(ctx.extra)
        with torch.random.fork_rng(devices=ctx.devices,
                                   device_type=ctx.device_type if ctx.devices else "cuda"), \
                torch.enable_grad():
            torch.set_rng_state(ctx.cpu_rng)
            if ctx.devices:
                set_device_states(ctx.devices, ctx.device_rng, device_type=ctx.device_type)
            with torch.autocast(ctx.device_type, dtype=ctx.autocast[1], enabled=ctx.autocast[0]):
                # the forward under the forward's autocast, backward outside it
                diff, _ = ctx.run(inputs, True)
            pairs = [(o, g) for o, g in zip(diff, grad_outputs[:ctx.n_diff]) if g is not None
                     and o.requires_grad]
            wrt = [t for t in (*inputs, *extra) if t.requires_grad]
            _check_no_hidden_leaves([o for o, _ in pairs], wrt)
            grads: Sequence[torch.Tensor | None] = [None] * len(wrt)
            if pairs and wrt:
                # sum <output, grad> (the same vector-Jacobian products): tensor grad_outputs would
                # make
                # torch.autograd import sympy (symbolic shapes) on first use (bench/NOTES.md)
                total = sum((o * g).sum() for o, g in pairs)
                grads = torch.autograd.grad(total, wrt, allow_unused=True)
        it = iter(grads)
        return (None, None, None,
                *[next(it) if t.requires_grad else None for t in (*inputs, *extra)])


def _check_no_hidden_leaves(outputs: list[torch.Tensor], known: list[torch.Tensor]) -> None:
    """ConfigError if the recomputed graph reaches a tensor that requires grad but was not an input
    of the segment (e.g. one a custom loss function closes over): ``_Recompute`` could not pass it a
    gradient, so checkpointing would silently drop that part of the meta-gradient."""
    ids = {id(t) for t in known}
    seen: set[int] = set()
    stack = [o.grad_fn for o in outputs if o.grad_fn is not None]
    while stack:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is None or id(nxt) in seen:
                continue
            seen.add(id(nxt))
            var = getattr(nxt, "variable", None)
            if var is None:
                stack.append(nxt)
            elif id(var) not in ids:
                raise ConfigError(
                    f"checkpoint_steps: the inner loop reads a tensor {tuple(var.shape)} that "
                    "requires "
                    "grad but is not a parameter of the model or the update rule "
                    "(e.g. one the loss "
                    "function captures): register it as a parameter, or use "
                    "checkpoint_steps=0")

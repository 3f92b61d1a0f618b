"""What a learner checks on the tasks it is given and on the adaptation it ran, each in one line.

Why here and not in the learner: these checks are the learner's contract with its callers (a
``TaskBatch`` that fits together, labels the model's head can score, an inner loop that stayed
finite and did not diverge) and read the same for every learner; the learner's code then reads as
the algorithm only.

- ``check_task``: a task's (or meta-batch's) tensors fit together (shapes, label kinds and ranges).
- ``OutputWidths``: the model's output width per kind of input, measured once by a one-example
  forward, so a head that does not fit the tasks is a ``FewshotError`` rather than an IndexError in
  the inner loop.
- ``raise_if_nonfinite``: training stops at a non-finite support loss (``AdaptationError``).
- ``warn_if_rising``: the divergence warning.  ``adapt`` and ``evaluate`` also compute the support
  loss after the last update and warn (an ``AdaptationWarning``, once per learner and step count)
  when its mean over the tasks exceeds ``RISE_FACTOR`` times the mean support loss before the first
  update: adaptation made the model worse on the very examples it adapted to (too many steps for the
  inner learning rate it was trained with, or a too large rate), so its accuracy would otherwise
  fall silently.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import AdaptationError, AdaptationWarning, FewshotError
from ..functional import call, copy_buffers, first_nonfinite_step, split_state
from ..nn.batchnorm import norm_training

# warn when the final support loss is more than 10% above the loss before adapting
RISE_FACTOR = 1.1


def check_task(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor | None,
               query_y: torch.Tensor | None, ways: int | None, *, batched: bool) -> None:
    """Raise ``FewshotError`` (one line) if a task's (or meta-batch's) tensors do not fit
    together."""
    lead = 2 if batched else 1
    what = "TaskBatch" if batched else "task"
    pairs = [("support", support_x, support_y)]
    if query_x is not None and query_y is not None:
        pairs.append(("query", query_x, query_y))
    for name, x, y in pairs:
        if x.dim() < lead or y.dim() < lead:
            raise FewshotError(
                f"{what} {name} tensors have too few dims (x {tuple(x.shape)}, y "
                f"{tuple(y.shape)}): "
                f"expected leading {'[B, n]' if batched else '[n]'}")
        if x.shape[:lead] != y.shape[:lead]:
            raise FewshotError(f"{what} {name}_x {tuple(x.shape)} and {name}_y {tuple(y.shape)} "
                               "disagree on the leading dims: give one target per example")
        if x.shape[lead - 1] == 0:
            raise FewshotError(f"{what} {name} set is empty: give at least one example")
        if ways is not None:
            if y.is_floating_point() or y.dtype == torch.bool:
                raise FewshotError(
                    f"{what} {name}_y must be integer class labels for classification "
                    f"(ways={ways}), "
                    f"got {y.dtype}; use ways=None for regression")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= ways):
                raise FewshotError(
                    f"{what} {name}_y labels must be in 0..{ways - 1} (ways={ways}), "
                    f"got {int(y.min())}..{int(y.max())}: relabel classes per task")
        elif not y.is_floating_point():
            raise FewshotError(f"{what} {name}_y is {y.dtype} but ways=None means regression: "
                               "give float targets or set ways")
    if query_x is not None and query_y is not None:  # the query pair was checked above
        sx, qx = support_x, query_x
        if sx.shape[lead:] != qx.shape[lead:] or (batched and sx.shape[0] != qx.shape[0]):
            raise FewshotError(
                f"support_x {tuple(sx.shape)} and query_x {tuple(qx.shape)} do not match: "
                "support and query examples must have the same shape (and the same "
                "number of tasks)")
        if support_y.shape[lead:] != query_y.shape[lead:]:
            raise FewshotError(
                f"support_y {tuple(support_y.shape)} and query_y {tuple(query_y.shape)} "
                "do not match beyond the example dim")


class OutputWidths:
    """The model's output width (scores per example; -1: no class dim) per input shape, dtype and
    device, each measured once with a one-example forward (no gradients, stored statistics, buffers
    copied)."""

    def __init__(self) -> None:
        self._seen: dict[tuple, int] = {}

    def width(self, model: nn.Module, x: torch.Tensor) -> int:
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        width = self._seen.get(key)
        if width is None:
            params, buffers = split_state(model)
            with torch.no_grad(), norm_training(model, False):
                out = call(model, params, copy_buffers(buffers), x[:1], step=0)
            width = out.shape[-1] if out.dim() >= 2 else -1
            self._seen[key] = width
        return width

    def check(self, model: nn.Module, x: torch.Tensor, ways: int | None) -> None:
        """One-line error unless the model scores exactly ``ways`` classes (a meta-batch's tasks are
        ``ways``-way)."""
        if ways is None:
            return
        width = self.width(model, x)
        if width != ways:
            raise FewshotError(
                f"the model outputs {width if width >= 0 else 'no class'} scores per example but "
                "the "
                f"tasks are {ways}-way: give the model a {ways}-way head "
                "(e.g. Conv4(channels, ways)) or sample tasks with as many ways as "
                "the head has")

    def check_at_least(self, model: nn.Module, x: torch.Tensor, ways: int) -> None:
        """One-line error unless the model scores at least ``ways`` classes (a task may use fewer
        than the head has)."""
        width = self.width(model, x)
        if width < ways:
            raise FewshotError(
                f"labels go up to {ways - 1} but the model outputs {max(width, 0)} scores per "
                f"example: relabel the task's classes 0..{max(width, 1) - 1} or "
                "give the model "
                f"a {ways}-way head")


def raise_if_nonfinite(losses: torch.Tensor, steps: int) -> None:
    """``AdaptationError`` naming the first inner step whose support loss (``losses [..., steps +
    1]``) is not finite."""
    bad = first_nonfinite_step(losses)
    if bad is not None:
        raise AdaptationError(
            f"support loss is not finite at inner step {bad} of {steps}: lower the inner learning "
            "rate or check the inputs for NaN/inf")


def warn_if_rising(warned: set[int], losses: torch.Tensor, steps: int, trained_steps: int) -> None:
    """One ``AdaptationWarning`` per step count (``warned`` holds those already warned about) when
    ``losses [tasks, steps + 1]`` (support loss before each update, then after the last) end more
    than ``RISE_FACTOR`` above where they started.  Called by the learner's public method's direct
    callee (``stacklevel`` points at the user's call)."""
    first, last = float(losses[:, 0].mean()), float(losses[:, -1].mean())
    if last > RISE_FACTOR * first and steps not in warned:
        warned.add(steps)
        warnings.warn(
            f"the support loss rose during adaptation, from {first:.3g} before the first inner "
            "step "
            f"to {last:.3g} after step {steps} (mean over {losses.shape[0]} tasks): the "
            "inner loop "
            f"diverges; use fewer steps (this learner trained with {trained_steps}) or a "
            "lower inner learning rate", AdaptationWarning, stacklevel=4)

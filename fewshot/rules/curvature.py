"""Hessian-vector products of the support loss for rules that use curvature (``needs_hvp``).

Why a context variable: a rule's ``forward`` sees gradients, state, parameters and the loss, never
the model or the data, so it cannot differentiate the support loss again itself.  The inner loop
computes the gradients of a rule with ``needs_hvp`` by ``torch.func.vjp`` of ``torch.func.grad``
(one linearisation per step, reused by every product) and hands the product function over here for
the rule's call, the way ``fewshot.nn.inner_step`` hands batch norm its step.  The same code runs
per task and under vmap.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

import torch

from ..errors import ConfigError

Params = dict[str, torch.Tensor]
HVP = Callable[[Params], Params]

_HVP: contextvars.ContextVar[HVP | None] = contextvars.ContextVar("fewshot_support_hvp",
                                                                  default=None)


@contextlib.contextmanager
def providing_hvp(hvp: HVP | None) -> Iterator[None]:
    """Inside the block, ``current_hvp()`` is ``hvp`` (``v -> H v``, ``H`` the support loss's
    Hessian with respect to the adapted parameters at the current step); None: no products at this
    step."""
    token = _HVP.set(hvp)
    try:
        yield
    finally:
        _HVP.reset(token)


def current_hvp() -> HVP:
    """The support loss's Hessian-vector product at the current inner step (``providing_hvp``)."""
    hvp = _HVP.get()
    if hvp is None:
        raise ConfigError(
            "this update rule needs Hessian-vector products of the support loss, which only "
            "fewshot's inner loop provides: run it through fewshot.InnerLoop or a "
            "learner")
    return hvp

"""Hypergradients by reverse-mode differentiation through training (Maclaurin, Duvenaud & Adams
2015; Franceschi et al. 2017), whole or truncated to the last K steps (Shaban et al. 2019).

The validation loss after ``steps`` updates, ``L_V(w_T(lambda), lambda)``, is differentiated with
respect to the hyperparameters ``lambda`` through every update ``w_{t+1} = Phi(w_t, lambda)``:
exact for the finite unroll (it sees learning rates, schedules and the path, not just the end
point), at the cost of one backward through the unroll, which ``checkpoint`` keeps to one
parameter copy per segment of memory.  Truncated to the last K steps, the earlier steps are
treated as constants: cheaper and biased, the usual compromise for long inner runs.

Usage::

    hg = unrolled_hypergradient(problem, params, validation_loss, [lrs, decay], checkpoint=20)
    hg.grads  # one tensor per hyperparameter, like it
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch

from ..errors import ConfigError
from ..rules.base import Params
from .problem import InnerProblem, unroll

OuterLoss = Callable[[Params], torch.Tensor]
"""``params -> scalar``: the validation (outer) loss of the trained parameters; it may read
hyperparameters directly too (their direct gradient is added)."""


class Hypergradient(NamedTuple):
    """``grads``: d(outer loss)/d(hyperparameter), one tensor per hyperparameter in the order given
    (zeros for one the outer loss does not depend on); ``outer``: the outer loss (detached);
    ``params``: the trained parameters it was measured at (detached); ``losses``: the training
    loss before each inner step."""

    grads: list[torch.Tensor]
    outer: torch.Tensor
    params: Params
    losses: torch.Tensor


def check_hyperparameters(hyperparameters: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The hyperparameters as a list, each a floating tensor with ``requires_grad=True``, else one
    ConfigError saying which and how to fix it."""
    hyper = list(hyperparameters)
    if not hyper:
        raise ConfigError("no hyperparameters given: pass the tensors to differentiate, e.g. "
                          "[rule.lrs, decay]")
    for i, h in enumerate(hyper):
        if not isinstance(h, torch.Tensor):
            raise ConfigError(f"hyperparameter {i} must be a tensor, got {type(h).__name__}")
        if not (h.is_floating_point() or h.is_complex()):
            raise ConfigError(f"hyperparameter {i} has dtype {h.dtype}, which has no gradient: "
                              "make it a floating tensor")
        if not h.requires_grad:
            raise ConfigError(f"hyperparameter {i} {tuple(h.shape)} does not require grad: create "
                              "it with requires_grad=True (or as an nn.Parameter)")
    return hyper


def unrolled_hypergradient(problem: InnerProblem, params: Params, outer: OuterLoss,
                           hyperparameters: Sequence[torch.Tensor], *, checkpoint: int = 0,
                           truncate: int | None = None) -> Hypergradient:
    """d outer(w_T) / d hyperparameters through the inner problem's unroll from ``params``: every
    step (``truncate`` None) or the last ``truncate`` steps; ``checkpoint`` as in ``unroll``."""
    hyper = check_hyperparameters(hyperparameters)
    with torch.enable_grad():
        result = unroll(problem, params, checkpoint=checkpoint, truncate=truncate)
        value = outer(result.params)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise ConfigError("the outer loss must return a scalar tensor: reduce it (e.g. "
                              ".mean())")
        grads = torch.autograd.grad(value, hyper, allow_unused=True)
    return Hypergradient([torch.zeros_like(h) if g is None else g for h, g in zip(hyper, grads)],
                         value.detach(), {n: p.detach() for n, p in result.params.items()},
                         result.losses)

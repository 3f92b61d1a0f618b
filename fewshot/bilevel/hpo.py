"""Single-task hyperparameter optimisation by hypergradient descent: the hyperparameters of one
training run (weight decay per weight, learning rates per layer and step, ...) learned on a
validation split.

Two loops, one per way of differentiating (docs/bilevel.md says when each is right):

- ``implicit_hpo`` (Lorraine, Vicol & Duvenaud 2020, Algorithm 1): train the parameters a few
  steps further with the current hyperparameters (warm start), take the implicit hypergradient at
  where training got, step the hyperparameters; repeat.  Right for hyperparameters of the training
  objective, millions of them at the price of a few Hessian-vector products per step.
- ``unrolled_hpo``: train from the same initialisation every time, differentiate the validation
  loss through the whole run (or its last K steps), step the hyperparameters; repeat.  Right for
  hyperparameters of the path (learning-rate schedules), at the price of a backward through the
  run.

Both count the inner training steps they spend (``HPOResult.inner_steps``), the currency in which
they compare with random and grid search.

Usage::

    result = implicit_hpo(problem, params, validation_loss, [decay], torch.optim.Adam([decay]),
                          hyper_steps=100, terms=5, alpha=0.1)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..checks import check_count
from ..rules.base import Params
from .implicit import implicit_hypergradient
from .problem import InnerProblem, unroll
from .unrolled import OuterLoss, check_hyperparameters, unrolled_hypergradient


@dataclass
class HPOResult:
    """The parameters trained last, the validation loss before each hyperparameter step
    (``history``) and the inner training steps spent in all."""

    params: Params
    history: list[float] = field(default_factory=list)
    inner_steps: int = 0


def _step(optimizer: torch.optim.Optimizer, hyper: list[torch.Tensor],
          grads: list[torch.Tensor]) -> None:
    optimizer.zero_grad(set_to_none=True)
    for h, g in zip(hyper, grads):
        h.grad = g.detach().clone()
    optimizer.step()


def implicit_hpo(problem: InnerProblem, params: Params, outer: OuterLoss,
                 hyperparameters: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer, *,
                 hyper_steps: int, terms: int = 5, alpha: float,
                 solver: str = "neumann") -> HPOResult:
    """``hyper_steps`` rounds of: ``problem.steps`` training steps from where the last round
    stopped, then one ``optimizer`` step of the hyperparameters along the implicit hypergradient
    at the trained parameters (``terms`` Neumann terms with step ``alpha``, or CG steps)."""
    hyper = check_hyperparameters(hyperparameters)
    check_count(hyper_steps, "hyper_steps")
    result = HPOResult({n: p.detach() for n, p in params.items()})

    def train_loss(p: Params) -> torch.Tensor:  # the whole training objective (step 0's batch)
        return problem.loss(p, problem.x, problem.y, 0)

    for _ in range(hyper_steps):
        with torch.no_grad():
            result.params = unroll(problem, result.params).params
        result.inner_steps += problem.steps
        hg = implicit_hypergradient(train_loss, result.params, outer, hyper, solver=solver,
                                    terms=terms, alpha=alpha)
        result.history.append(float(hg.outer))
        _step(optimizer, hyper, hg.grads)
    return result


def unrolled_hpo(problem: InnerProblem, params: Params, outer: OuterLoss,
                 hyperparameters: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer, *,
                 hyper_steps: int, checkpoint: int = 0, truncate: int | None = None) -> HPOResult:
    """``hyper_steps`` rounds of: training from ``params`` through the whole inner problem,
    differentiated (``checkpoint``, ``truncate`` as in ``unrolled_hypergradient``), then one
    ``optimizer`` step of the hyperparameters."""
    hyper = check_hyperparameters(hyperparameters)
    check_count(hyper_steps, "hyper_steps")
    result = HPOResult({n: p.detach() for n, p in params.items()})
    for _ in range(hyper_steps):
        hg = unrolled_hypergradient(problem, params, outer, hyper, checkpoint=checkpoint,
                                    truncate=truncate)
        result.params, result.inner_steps = hg.params, result.inner_steps + problem.steps
        result.history.append(float(hg.outer))
        _step(optimizer, hyper, hg.grads)
    return result

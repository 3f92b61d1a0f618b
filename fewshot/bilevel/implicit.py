"""Hypergradients by implicit differentiation at the inner solution (Lorraine, Vicol & Duvenaud
2020, "Optimizing Millions of Hyperparameters by Implicit Differentiation").

At a minimum ``w*`` of the training loss ``L_T(w, lambda)``, the implicit function theorem gives
the best-response Jacobian ``dw*/dlambda = -H^{-1} d^2 L_T / dw dlambda`` with ``H`` the training
loss's Hessian in ``w``, so the hypergradient of the validation loss is

    d L_V / d lambda = dL_V/dlambda - (d^2 L_T / dlambda dw) H^{-1} dL_V/dw.

Only the end point matters: the cost is a few Hessian-vector products whatever the length of
training, and memory is one graph of the training loss.  ``H^{-1} v`` is approximated by

- ``"neumann"``: the Neumann series ``alpha * sum_{j=0}^{K} (I - alpha H)^j v`` (Lorraine et al.),
  which falls short of ``H^{-1} v`` by ``(I - alpha H)^{K+1} H^{-1} v``: geometrically in ``K`` when
  ``0 < alpha < 2 / lambda_max(H)`` (``alpha`` is usually the inner learning rate);
- ``"cg"``: conjugate gradient (``fewshot.cg``), exact in at most ``dim(w)`` steps for positive
  definite ``H``.

It is right where ``w*`` is (close to) a minimum: at a point training has not reached, the answer is
the hypergradient of a problem that has; hyperparameters the minimum does not depend on (a
learning rate) get no gradient, so those are learned by unrolling (``unrolled_hypergradient``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..cg import conjugate_gradient, dot
from ..checks import check_count
from ..errors import ConfigError
from ..rules.base import Params
from .unrolled import Hypergradient, OuterLoss, check_hyperparameters

HVP = Callable[[Params], Params]
SOLVERS = ("neumann", "cg")


def neumann_inverse_hvp(hvp: HVP, v: Params, *, terms: int, alpha: float) -> Params:
    """``alpha * sum_{j=0}^{terms} (I - alpha H)^j v``: the Neumann approximation of
    ``H^{-1} v``."""
    term = {n: t.detach() for n, t in v.items()}
    total = dict(term)
    for _ in range(terms):
        h = hvp(term)
        term = {n: term[n] - alpha * h[n] for n in term}
        total = {n: total[n] + term[n] for n in total}
    return {n: alpha * t for n, t in total.items()}


def implicit_hypergradient(train_loss: Callable[[Params], torch.Tensor], params: Params,
                           outer: OuterLoss, hyperparameters: Sequence[torch.Tensor], *,
                           solver: str = "neumann", terms: int = 20, alpha: float | None = None,
                           cg_tol: float = 1e-10) -> Hypergradient:
    """The implicit-function-theorem hypergradient of ``outer`` at ``params`` (the trained
    parameters, taken as a minimum of ``train_loss``, which reads the hyperparameters).

    ``solver="neumann"``: ``terms`` terms of the series with step ``alpha`` (required: e.g. the
    inner learning rate); ``solver="cg"``: at most ``terms`` CG steps, stopping at relative
    residual ``cg_tol``.
    """
    hyper = check_hyperparameters(hyperparameters)
    if solver not in SOLVERS:
        raise ConfigError(f"unknown solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    check_count(terms, "terms", minimum=0)
    if solver == "neumann" and (alpha is None or not alpha > 0):
        raise ConfigError("the Neumann series needs a step alpha > 0 below 2 / (the largest "
                          "Hessian eigenvalue): pass alpha=, e.g. the inner learning rate")
    names = list(params)
    with torch.enable_grad():
        w = {n: p.detach().requires_grad_() for n, p in params.items()}
        value = outer(w)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise ConfigError("the outer loss must return a scalar tensor: reduce it (e.g. "
                              ".mean())")
        direct = torch.autograd.grad(value, [*hyper, *(w[n] for n in names)], allow_unused=True)
        d_hyper = direct[:len(hyper)]
        v = {n: torch.zeros_like(w[n]) if g is None else g for n, g in
             zip(names, direct[len(hyper):])}
        loss = train_loss(w)
        if loss.dim() != 0 or not bool(torch.isfinite(loss.detach())):
            raise ConfigError(f"the training loss at the inner solution must be a finite scalar, "
                              f"got {loss.detach()}: train to a finite minimum first")
        g = dict(zip(names, torch.autograd.grad(loss, [w[n] for n in names], create_graph=True)))

        def hvp(u: Params) -> Params:
            hu = torch.autograd.grad([g[n] for n in names], [w[n] for n in names],
                                     [u[n] for n in names], retain_graph=True)
            return {n: h.detach() for n, h in zip(names, hu)}

        if solver == "neumann":
            assert alpha is not None
            p = neumann_inverse_hvp(hvp, v, terms=terms, alpha=alpha)
        else:
            p = conjugate_gradient(hvp, {n: t.detach() for n, t in v.items()}, terms, cg_tol).x
        mixed = torch.autograd.grad(dot(g, {n: t.detach() for n, t in p.items()}), hyper,
                                    allow_unused=True)
    grads = []
    for h, d, m in zip(hyper, d_hyper, mixed):
        total = torch.zeros_like(h)
        if d is not None:
            total = total + d
        if m is not None:
            total = total - m
        grads.append(total)
    return Hypergradient(grads, value.detach(), {n: p.detach() for n, p in params.items()},
                         torch.zeros(0))

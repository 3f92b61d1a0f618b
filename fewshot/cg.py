"""Conjugate gradient on parameter dicts, truncated as Newton-CG solvers are, the same code per task
and under vmap.

Why truncated: the matrices fewshot solves with (iMAML's ``A = I + H/lam``) are positive definite
only near a minimiser of the proximal objective, and a network's support loss after a finite inner
loop often is not there.  On Omniglot at the 5-way iMAML preset, all 4 tasks of a probe met a
direction of negative curvature within 10 CG steps, and plain CG's residual then grew to 10-130
times the right-hand side's norm: a meta-gradient dominated by noise.  With a ``radius``, two rules
stop a solve early and keep what it has:

- a direction with ``p^T A p <= 0`` stops it at the current iterate, which minimises the quadratic
  model over the Krylov subspace explored so far, where ``A`` is positive definite (the truncated
  Newton-CG rule, Nocedal & Wright, Algorithm 7.1); at the very first step, where there is no
  iterate yet, it goes along ``p = b`` to the boundary, ``x = radius * b`` (for iMAML at radius 1:
  the first-order meta-gradient);
- a step that would leave ``||x|| <= radius * ||b||`` stops on that boundary along its direction
  (Steihaug's rule, Algorithm 7.2): the tiny positive curvatures next to negative ones gave the
  blow-ups.

The radius loses nothing where the theory holds: for ``A = I + H/lam`` with ``H`` positive
semi-definite, ``||A^{-1} b|| <= ||b||``, and CG's iterates grow in norm monotonically towards the
solution (Steihaug's theorem), so radius 1 never binds there and no curvature is non-positive: the
solve is plain CG.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from .func_transforms import under_transform

# as fewshot.functional.Params (not imported: the rules import this module)
Params = dict[str, torch.Tensor]


class CGResult(NamedTuple):
    """``x``: the solution; ``residual``: its relative residual ``||b - A x|| / ||b||`` (CG's
    recursive residual, exact in exact arithmetic, also where truncated); ``negative_curvature``:
    the solve met a direction with ``p^T A p <= 0`` (without a radius, plain CG steps on through
    it); ``truncated``: a rule of the module docstring stopped it (negative curvature, or a step
    leaving the radius)."""

    x: Params
    residual: torch.Tensor
    negative_curvature: torch.Tensor
    truncated: torch.Tensor


def dot(u: Params, v: Params) -> torch.Tensor:
    """``sum_n <u[n], v[n]>`` over a parameter dict."""
    like = next(iter(u.values()))
    return sum(
        ((u[n] * v[n]).sum() for n in u), torch.zeros((), dtype=like.dtype, device=like.device))


def conjugate_gradient(apply_a: Callable[[Params], Params], b: Params, steps: int, tol: float,
                       radius: float | None = None) -> CGResult:
    """Solve ``A x = b`` (``A`` symmetric, given as ``apply_a``) from ``x = 0`` in at most ``steps``
    CG steps, truncated by the module docstring's rules when ``radius`` is given, else plain CG.

    A solve also stops once its relative residual is at most ``tol``.  Steps after a solve stopped
    change nothing (masked, so the same code runs under ``vmap``); outside transforms the loop ends
    there instead.
    """
    x = {n: torch.zeros_like(v) for n, v in b.items()}
    r, p = dict(b), dict(b)
    rs = b_norm2 = dot(r, r)
    ones, zeros = torch.ones_like(rs), torch.zeros_like(rs)
    threshold = tol * tol * b_norm2
    delta2 = None if radius is None else radius * radius * b_norm2
    curved = torch.zeros_like(rs, dtype=torch.bool)
    edge = torch.zeros_like(rs, dtype=torch.bool)
    for _ in range(steps):
        active = (rs > threshold) & ~edge
        if not under_transform() and not bool(active):
            break
        ap = apply_a(p)
        pap = dot(p, ap)
        alpha = rs / torch.where(active & (pap != 0), pap, ones)
        negative = active & ~(pap > 0) & torch.isfinite(pap)
        if delta2 is None:
            stop = torch.zeros_like(active)
            step = alpha
        else:  # tau: to the boundary along p, the positive root of ||x + tau p||^2 = delta^2
            xx, xp, pp = dot(x, x), dot(x, p), dot(p, p)
            step_norm2 = xx + 2 * alpha * xp + alpha * alpha * pp
            leave = active & ~negative & (step_norm2 > delta2)
            pp_safe = torch.where(pp > 0, pp, ones)
            tau = (-xp + torch.sqrt(torch.clamp(xp * xp + pp * (delta2 - xx), min=0))) / pp_safe
            at_start = xx == 0  # no step taken yet: along p = b to the boundary (x = radius * b)
            step = torch.where(negative, torch.where(at_start, tau, zeros),
                               torch.where(leave, tau, alpha))
            stop = negative | leave
        step = torch.where(active, step, zeros)
        x = {n: x[n] + step * p[n] for n in x}
        r = {n: r[n] - step * ap[n] for n in r}
        rs_new = dot(r, r)
        beta = rs_new / torch.where(active, rs, ones)
        p = {n: torch.where(active, r[n] + beta * p[n], p[n]) for n in p}
        rs = torch.where(active, rs_new, rs)
        curved, edge = curved | negative, edge | stop
    rel = torch.sqrt(rs / torch.where(b_norm2 > 0, b_norm2, ones))
    return CGResult(x, rel, curved, edge)

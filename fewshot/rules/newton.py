"""Damped Newton steps by truncated conjugate gradient (Hessian-free optimisation) as an inner-loop
rule.

Why: iMAML's best Omniglot numbers (iMAML-HF, Rajeswaran et al. 2019) come from solving the inner
problem with a Hessian-free optimiser instead of gradient descent: a few Newton-CG steps get much
closer to the proximal problem's minimiser, which the implicit meta-gradient assumes, than the same
compute in plain gradient steps.  Each step solves ``(H + damping I) d = g`` by at most ``cg_steps``
CG iterations on Hessian-vector products of the support loss (``fewshot.rules.curvature``) and moves
``-lr * d``.

With ``damping`` > 0 the CG is truncated at radius ``1 / damping`` (in units of ``||g||``): for
``H`` positive semi-definite the Newton step satisfies ``||d|| <= ||g|| / damping``, so the radius
never binds where the model is locally convex and bounds the step where it is not (``fewshot.cg``).
There is no line search: the damping and the radius keep each step at most a gradient step of ``lr /
damping``, and the learners' non-finite checks and best-step selection see the support losses as for
every rule.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..cg import conjugate_gradient
from ..checks import check_count, check_number
from .base import Params, State, UpdateRule
from .curvature import current_hvp


class NewtonCG(UpdateRule):
    """``update = -lr * (H + damping I)^{-1} g`` by truncated CG (module docstring).

    ``cg_tol``: a step's solve stops once its relative residual is at most this.  ``radius``: the
    CG's bound as a multiple of ``||g||`` (default ``1 / damping``; None: plain CG, needs
    ``damping`` > 0 or a convex loss to be safe).  ``dtype``: the parameters', to check that ``lr``
    and ``damping`` fit it. Usage: ``Chain(Proximal(names, 2.0), NewtonCG(names, damping=2.0))``.
    """

    needs_hvp = True

    def __init__(self, names: Sequence[str], *, lr: float = 1.0, damping: float = 0.0,
                 cg_steps: int = 5,
                 cg_tol: float = 1e-3, radius: float | None | str = "auto",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.names = list(names)
        self.lr = check_number(lr, "NewtonCG lr", above=0, hint=" (1 = the full Newton step)")
        self.damping = check_number(damping, "NewtonCG damping", at_least=0)
        # RuntimeError if the dtype overflows
        torch.full((), self.lr * max(self.damping, 1.0), dtype=dtype)
        self.cg_steps = check_count(cg_steps, "NewtonCG cg_steps")
        self.cg_tol = check_number(cg_tol, "NewtonCG cg_tol", at_least=0, below=1,
                                   note=" (a relative residual)")
        self.radius: float | None
        if radius == "auto":
            self.radius = 1.0 / self.damping if self.damping > 0 else None
        else:
            self.radius = None if radius is None else check_number(radius, "NewtonCG radius",
                                                                   above=0,
                                                                   hint=" (or None for plain CG)")

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        hvp, damping = current_hvp(), self.damping

        def apply_a(v: Params) -> Params:
            hv = hvp(v)
            return {n: hv[n] + damping * v[n] for n in v} if damping else hv

        solve = conjugate_gradient(apply_a, dict(grads), self.cg_steps, self.cg_tol, self.radius)
        return {n: -self.lr * d for n, d in solve.x.items()}, state

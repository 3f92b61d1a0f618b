"""Implicit MAML (Rajeswaran, Finn, Kakade & Levine 2019): the meta-gradient by the implicit
function theorem.

The inner problem is ``phi* = argmin L_s(phi) + (lam/2) ||phi - theta||^2``, run by plain gradient
descent on the support loss plus the proximal term (the ``Proximal`` rule adds ``lam (phi - theta)``
to the support gradients, ``theta`` detached), with no graph through the inner loop.  At its
minimiser ``d phi*/d theta = (I + H/lam)^{-1}`` (``H`` the support-loss Hessian at ``phi``), so the
meta-gradient is ``g = (I + H/lam)^{-1} grad L_q(phi)``, solved by conjugate gradient with
Hessian-vector products.  Why: memory no longer grows with the inner steps (only the last ``phi`` is
needed), so the inner loop can run long enough to approach its minimiser.  Parameters that are
meta-learned but not adapted (``w``: norm affine parameters, ``no_adapt``) get their exact implicit
gradient too, ``dL_q/dw - (1/lam) d/dw (grad_phi L_s(phi, w) . g)``.

Variants (our naming, after the paper's): ``imaml`` = iMAML-GD (gradient-descent inner solver, CG
meta-gradient); ``first_order=True`` (registry ``foimaml``) skips CG and uses ``grad L_q(phi)`` as
the meta-gradient (the first-order approximation, ``(I + H/lam)^{-1} ~ I``); ``first_order_epochs``
runs that first and CG later.  ``inner_solver="hf"`` (registry ``imaml-hf``) is iMAML-HF, the
paper's best numbers: the *inner* problem solved by damped Newton-CG steps
(``fewshot.rules.NewtonCG``, damping ``lam``, the proximal objective's own curvature) instead of
gradient descent; its meta-gradient is the same CG.

The meta-loss: ``meta_loss(backward=False)`` returns a surrogate per task, ``L_q(phi) + sum(theta *
g) - sum(theta * g).detach()`` (plus the ``w`` term), whose value is the query loss and whose
gradient w.r.t. ``theta`` is the implicit meta-gradient; ``backward=True`` leaves that gradient,
averaged over tasks, in ``.grad`` as every learner does.  ``adapt`` runs the same proximal inner
loop; the parameters it returns are differentiable through the unrolled loop (as for every learner),
not by the implicit gradient.

HVPs (``fewshot.functional.value_grads_and_hvp``): on the per-task loop by double backward through
one support-gradient graph built once per task and reused by every CG step; under ``vmap`` by
``torch.func.vjp`` of ``torch.func.grad`` (the same reuse).  The per-task loop measured faster with
the cached double backward than with forward-over-reverse (``torch.func.jvp`` of ``grad``), which
reruns the forward and backward at every CG step (numbers in bench/results/imaml_costs.md).  CG runs
under vmap too (a fixed number of steps, finished tasks masked); the loop stops a task's solve at
its tolerance, which gives the same numbers.

The CG is truncated as Newton-CG solvers are (``fewshot/cg.py``): it stops at a direction of
non-positive curvature keeping its iterate, and a step leaving ``||x|| <= cg_radius ||grad L_q||``
stops on that boundary.  ``I + H/lam`` is positive definite only near a minimiser of the proximal
objective, and a network's Hessian after a finite inner loop often is not (plain CG's residual then
grew to 10-130x on Omniglot).  With ``H`` positive semi-definite neither rule fires at the default
radius 1, so nothing changes where the paper's assumption holds; ``cg_radius=None`` runs plain CG.

Metrics (training meta-batches with CG): ``cg_residual``, the mean over tasks of the relative
residual ``||b - A x|| / ||b||`` (CG's recursive residual) after the solve; ``cg_unconverged``, how
many tasks' solves ended above ``cg_tol``; ``cg_negative_curvature``, how many met a direction with
``p^T A p <= 0``; ``cg_truncated``, how many a truncation rule stopped early.  A non-finite solve
raises ``AdaptationError`` (as a non-finite support loss).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import torch

from ..cg import conjugate_gradient
from ..cg import dot as _dot
from ..errors import AdaptationError
from ..functional import Params, call, copy_buffers, value_and_grads, value_grads_and_hvp
from ..rules import SGD, NewtonCG, UpdateRule
from ..rules.base import Chain, State
from .base import GradientLearner
from .config import IMAMLConfig
from .result import TaskResult
from .spec import LearnerSpec
from .task import Objective, TaskSettings, TaskTensors


class Proximal(UpdateRule):
    """Adds the proximal term's gradient ``lam * (p - anchor)`` to the gradients, ``anchor`` = the
    parameters the inner loop started from, detached (``init``'s state): chained before SGD it makes
    the inner objective ``L_s + (lam/2) ||phi - theta||^2``."""

    def __init__(self, names: list[str], lam: float) -> None:
        super().__init__()
        self.names, self.lam = list(names), float(lam)

    def init(self, params: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None) -> State:
        return {"anchor": {n: params[n].detach() for n in self.names}}

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        return {n: g + self.lam * (params[n] - state["anchor"][n]) for n, g in grads.items()}, state


class IMAML(GradientLearner):
    """Implicit MAML over any ``nn.Module`` (module docstring): proximal gradient-descent inner
    loop, meta-gradient by CG on ``(I + H/lam)``.

    Usage: ``learner = IMAML(model, IMAMLConfig(lam=2.0, cg_steps=5));
    learner.meta_backward(batch)``
    """

    config_class = IMAMLConfig
    config: IMAMLConfig

    def build_rule(self) -> UpdateRule:
        cfg, ref = self.config, self.reference_param()
        if cfg.inner_solver == "hf":
            return Chain(Proximal(self.names, cfg.lam),
                         NewtonCG(self.names, lr=cfg.inner_lr, damping=cfg.lam,
                                                                 cg_steps=cfg.hf_cg_steps,
                                                                 cg_tol=cfg.cg_tol,
                                                                 dtype=ref.dtype))
        return Chain(Proximal(self.names, cfg.lam),
                     SGD(self.names, cfg.inner_lr, dtype=ref.dtype, device=ref.device))

    def batch_metrics(self, result: TaskResult) -> dict[str, float]:
        res = result.extras.get("cg_residual")
        if res is None:
            return {}
        if not bool(res.isfinite().all()):
            raise AdaptationError(
                "the conjugate-gradient solve of the implicit meta-gradient is not finite: raise "
                "lam "
                "(I + H/lam must stay positive definite) or lower inner_lr")
        tol = self.config.cg_tol
        return {"cg_residual": float(res.mean()),
                "cg_unconverged": float((res > tol).sum()) if tol else 0.0,
                "cg_negative_curvature": float(result.extras["cg_negative_curvature"].sum()),
                "cg_truncated": float(result.extras["cg_truncated"].sum())}

    def task_objective(self, params: Params, buffers: Params, task: TaskTensors,
                       settings: TaskSettings) -> Objective:
        """``phi`` = the proximal inner loop's solution from ``theta`` (no graph kept); the
        objective's value is the query loss at ``phi``, its gradient w.r.t. ``theta`` the implicit
        meta-gradient ``(I + H/lam)^-1 grad L_q(phi)`` by CG (first order: ``grad L_q(phi)``).
        Without grad mode there is no meta-gradient to take: MAML's objective, first order."""
        if not torch.is_grad_enabled():
            return super().task_objective(params, buffers, task,
                                          replace(settings, first_order=True))
        sx, sy, qx, qy = task.support_x, task.support_y, task.query_x, task.query_y
        names, lam, steps, loss_fn = self.names, self.config.lam, settings.steps, settings.loss_fn
        at = self.forward_mode.bn_step(steps)
        res = settings.loop.run({k: v.detach() for k, v in params.items()}, buffers, sx, sy,
                                steps=steps,
                                noise=task.noise, first_order=True, keep=())
        phi = {n: res.at(steps)[n].detach() for n in names}
        # meta-learned only: keep their graph
        fixed = {k: v for k, v in params.items() if k not in phi}
        fixed_grad = any(v.requires_grad for v in fixed.values())

        def query(p: Params) -> tuple[torch.Tensor, tuple[torch.Tensor, Params]]:
            bufs = copy_buffers(res.buffers)
            out = self.forward_mode.query({**fixed, **p}, bufs, sx, qx, at)
            return loss_fn(out, qy), (out, bufs)

        def support(p: Params) -> tuple[torch.Tensor, Params]:
            out = call(self.model, {**fixed, **p}, copy_buffers(res.buffers), sx, step=at)
            return loss_fn(out, sy), {}

        # the query loss's graph is kept: it reaches the meta-learned-only parameters
        q_loss, (out, bufs), g_q = value_and_grads(query, phi, retain_graph=True)
        extras: Params = {}
        surrogate = torch.zeros((), dtype=q_loss.dtype, device=q_loss.device)
        if settings.first_order:
            x = g_q
        else:
            # one support-gradient graph at phi, differentiated again by every product
            _, _, g_s, hvp = value_grads_and_hvp(support, phi, differentiable=False)
            solve = conjugate_gradient(lambda v: _plus_scaled(v, hvp(v), 1 / lam),
                                       {n: g.detach() for n, g in g_q.items()},
                                       self.config.cg_steps,
                                       self.config.cg_tol, self.config.cg_radius)
            x = {n: v.detach() for n, v in solve.x.items()}
            extras["cg_residual"] = solve.residual.detach()
            extras["cg_negative_curvature"] = solve.negative_curvature
            extras["cg_truncated"] = solve.truncated
            if fixed_grad:  # the implicit gradient of the meta-learned-only parameters
                surrogate = surrogate - _dot(g_s, x) / lam
        surrogate = surrogate + _dot({n: params[n] for n in names},
                                     {n: v.detach() for n, v in x.items()})
        return Objective(q_loss + (surrogate - surrogate.detach()), q_loss, out, res.losses, bufs,
                         extras)


def _plus_scaled(v: Params, hv: Params, scale: float) -> Params:
    """``v + scale * hv`` (``A v`` for ``A = I + H/lam``)."""
    return {n: v[n] + scale * hv[n] for n in v}


SPECS = (LearnerSpec("imaml", IMAML), LearnerSpec("foimaml", IMAML, forced={"first_order": True}),
         LearnerSpec("imaml-hf", IMAML, defaults={"inner_steps": 5, "inner_lr": 1.0},
                     forced={"inner_solver": "hf"}))

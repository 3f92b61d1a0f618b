"""One task's run: adapt on its support set, then the (MSL-weighted) query loss, the metric, and the
support losses before each update (and after the last, when asked).

Why a module of its own: this is the computation the task batching runs per task, the loop calling it
task by task and vmap calling it once over all tasks, so it must be a pure function of its tensors
(no Python branching on their values under vmap); the learner's API around it only chooses steps,
schedules and what to report.  ``TaskRunner`` is a mixin of ``GradientLearner``: it reads the
learner's ``model``, ``rule``, ``names``, ``config`` and ``user_loss_fn``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..best_step import choose_best
from ..functional import InnerLoopResult, LossFn, Params, call, copy_buffers, inner_loop, split_state
from ..nn.batchnorm import norm_training
from ..precision import float32_outputs
from ..rules.base import UpdateRule
from .bn_forward import NormModeForward
from .result import Adaptation, TaskResult


class Float32Loss:
    """``loss_fn`` applied to float32 outputs: a no-op in float32/float64, a cast under bf16 autocast."""

    def __init__(self, fn: LossFn) -> None:
        self.fn = fn

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(float32_outputs(out), target)


class TaskRunner(NormModeForward):
    """``_task`` (one task's ``TaskResult``) and what it needs: the loss, the final support loss."""

    rule: UpdateRule
    names: list[str]
    user_loss_fn: LossFn | None

    def _loss_fn(self, ways: int | None) -> LossFn:
        """The task loss, on float32 outputs (under bf16 autocast the logits are cast first: fewshot.precision)."""
        fn = self.user_loss_fn
        if fn is None:
            kind = self.config.loss
            if kind == "auto":
                kind = "cross_entropy" if ways is not None else "mse"
            fn = F.cross_entropy if kind == "cross_entropy" else F.mse_loss
        return Float32Loss(fn)

    def _task(self, params: Params, buffers: Params, sx, sy, qx, qy, noise, *, steps: int, first_order: bool,
              weights: list[float], loss_fn: LossFn, ways: int | None, final_loss: bool = False,
              best: bool = False) -> TaskResult:
        """One task from ``params``/``buffers`` (its own buffer copy): ``steps`` updates on ``(sx, sy)``, then
        the query loss after every step with a non-zero weight (``total``: their weighted sum), or with
        ``best`` the query loss of the step ``choose_best`` picks; ``final_loss`` adds the support loss
        after the last update to ``support_losses``."""
        res = inner_loop(self.model, params, buffers, sx, sy, loss_fn=loss_fn, steps=steps, rule=self.rule,
                         names=self.names, noise=noise, first_order=first_order,
                         per_step_bn=self.config.per_step_bn, keep=[t for t, w in enumerate(weights, 1) if w],
                         checkpoint=self.config.checkpoint_steps, track_best=best)
        bufs = res.buffers
        step = torch.full((), steps, dtype=torch.long, device=sx.device)
        total = out = q_loss = s_final = None
        if best:  # evaluation: the query outputs of the step choose_best picks
            assert res.best is not None
            s_final = self._final_support_loss(res, sx, sy, loss_fn, steps)
            chosen = choose_best(res.best, res.at(steps), s_final, steps)
            out = self._forward_at_step({**res.at(steps), **chosen.params}, copy_buffers(bufs), sx, qx,
                                        chosen.step, steps)
            total = q_loss = loss_fn(out, qy)
            step = chosen.step
        else:
            for t in range(1, steps + 1):
                if weights[t - 1] == 0.0:
                    continue
                bufs = copy_buffers(bufs)
                s_out, out = self._joint_forward(res.at(t), bufs, sx, qx, self._bn_step(t))
                if final_loss and t == steps and s_out is not None:  # support mode: the final support loss for free
                    s_final = loss_fn(s_out, sy).detach().reshape(1)
                q_loss = loss_fn(out, qy)
                total = weights[t - 1] * q_loss if total is None else total + weights[t - 1] * q_loss
        assert out is not None and q_loss is not None and total is not None  # the last weight is never 0
        s_losses = res.losses
        if final_loss:
            s_final = self._final_support_loss(res, sx, sy, loss_fn, steps) if s_final is None else s_final
            s_losses = torch.cat([res.losses, s_final])
        out = float32_outputs(out)
        if ways is not None:
            metric = (out.argmax(-1) == qy).to(out.dtype).mean()
        else:
            metric = F.mse_loss(out, qy) if out.shape == qy.shape else q_loss
        return TaskResult(total, q_loss.detach(), metric.detach(), s_losses, bufs, step)

    def _adapt_task(self, sx: torch.Tensor, sy: torch.Tensor, *, steps: int, first_order: bool, loss_fn: LossFn,
                    best: bool) -> Adaptation:
        """``adapt``'s inner loop on one task, outside any batching: the parameters after ``steps`` updates
        (with ``best``, those of the step ``choose_best`` picks) and the support losses before each update
        and after the last."""
        params, buffers = split_state(self.model)
        with norm_training(self.model, self._norm_flag()):
            res = inner_loop(self.model, params, buffers, sx, sy, loss_fn=loss_fn, steps=steps, rule=self.rule,
                             names=self.names, first_order=first_order, per_step_bn=self.config.per_step_bn, keep=(),
                             checkpoint=self.config.checkpoint_steps, track_best=best)
            final = self._final_support_loss(res, sx, sy, loss_fn, steps)
        losses = torch.cat([res.losses, final])
        if not best:
            return Adaptation(res.at(steps), steps, losses)
        assert res.best is not None
        chosen = choose_best(res.best, res.at(steps), final, steps)
        return Adaptation({**res.at(steps), **chosen.params}, int(chosen.step), losses)

    def _final_support_loss(self, res: InnerLoopResult, sx: torch.Tensor, sy: torch.Tensor, loss_fn: LossFn,
                            steps: int) -> torch.Tensor:
        """``[1]``: the support loss after the last update (not needed for learning; it shows divergence)."""
        with torch.no_grad():
            out = call(self.model, res.at(steps), copy_buffers(res.buffers), sx, step=self._bn_step(steps))
            return loss_fn(out, sy).reshape(1)

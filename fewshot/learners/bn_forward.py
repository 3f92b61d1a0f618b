"""The batch-norm-mode forward: how a learner runs its model so that ``bn_mode`` means what it says.

Why a module of its own: which statistics normalise a forward (the batch's, the support set's, the
stored ones) and which per-step slot it uses are the one place where the four modes differ; the rest of
the learner (inner loop, task batching, the API) is the same for all of them.  docs/batchnorm.md is the
contract:

- ``"transductive"``: batch statistics always (the original MAML);
- ``"support"``: batch statistics of the task's support set, also for its queries (the support set goes
  through the same forward ahead of them and every layer takes its statistics from it alone), so a
  query's output does not depend on the other queries;
- ``"running"``: batch statistics + running updates in train mode, stored statistics in eval mode;
- ``"frozen"``: stored statistics always, never updated.

Each task runs on its own copy of the buffers; after a training-mode ``meta_loss`` the module's
floating buffers become the mean over tasks of the updated copies (``write_back``).
``adapt``/``predict``/``evaluate`` never write buffers.  With ``per_step_bn`` the forward with
parameters after ``t`` updates uses slot ``t``.

``NormModeForward`` is a mixin of ``GradientLearner``: it reads the learner's ``model``, ``config``,
``training`` and ``_torch_bn`` (the torch.nn batch-norm layers, found once) at every call.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import ConfigError, FewshotError
from ..func_transforms import under_transform
from ..functional import Params, call, copy_buffers, split_state
from ..nn.batchnorm import Statistics, given_statistics, norm_training, record_statistics, statistics_from
from .config import LearnerConfig
from .inputs import check_input

if TYPE_CHECKING:
    from .adapted import AdaptedModel


def torch_batch_norms(model: nn.Module) -> list[str]:
    """Names of ``model``'s torch.nn batch-norm layers (``bn_mode="support"`` cannot take statistics from them)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def write_back(model: nn.Module, new_bufs: Params) -> None:
    """Set ``model``'s buffers from the per-task copies ``new_bufs`` (``[tasks, ...]`` each): the mean over
    tasks for floating buffers, the first task's for the others (e.g. ``num_batches_tracked``)."""
    with torch.no_grad():
        for name, buf in model.named_buffers():
            new = new_bufs[name]
            buf.copy_(new.mean(0) if buf.is_floating_point() else new[0])


class NormModeForward:
    """The learner's forwards under its ``bn_mode`` and per-step slots (see the module docstring)."""

    model: nn.Module
    config: LearnerConfig
    training: bool
    _torch_bn: list[str]

    def _bn_step(self, t: int) -> int:
        """The batch-norm slot of the forward with parameters after ``t`` updates."""
        return t if self.config.per_step_bn else 0

    def _norm_flag(self) -> bool:
        """Whether batch norm uses batch statistics (``norm_training``) in the learner's current mode."""
        mode = self.config.bn_mode
        return True if mode in ("transductive", "support") else (self.training if mode == "running" else False)

    def _query_forward(self, params: Params, buffers: Params, sx: torch.Tensor | None, qx: torch.Tensor,
                       step: int) -> torch.Tensor:
        """The model's outputs on queries ``qx`` after ``step`` updates.  In ``"support"`` mode the
        support examples ``sx`` go through the same forward ahead of the queries and every batch-norm
        layer takes its statistics from them alone (``statistics_from``), so a query is normalised as
        the support set was at that step and never by the other queries."""
        return self._joint_forward(params, buffers, sx, qx, step)[1]

    def _joint_forward(self, params: Params, buffers: Params, sx: torch.Tensor | None, qx: torch.Tensor,
                       step: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(support outputs or None, query outputs)``: in ``"support"`` mode the one forward of
        ``_query_forward`` also gives the support outputs at that step, as a forward of ``sx`` alone
        would (same statistics), so callers that need both need not run the support set again."""
        if self.config.bn_mode != "support":
            return None, call(self.model, params, buffers, qx, step=step)
        if sx is None:
            raise FewshotError("bn_mode='support' normalises queries with the support set's batch statistics: "
                               "predict with what learner.adapt returns (adapted(x)), or pass the support "
                               "examples, learner.predict(x, params, support_x=support_x)")
        self._check_support_mode()
        n = sx.shape[0]
        with statistics_from(n):
            out = call(self.model, params, buffers, torch.cat([sx, qx]), step=step)
        return out[:n], out[n:]

    def _check_support_mode(self) -> None:
        """ConfigError when the model has a torch.nn batch norm, which cannot take the support set's statistics."""
        if self._torch_bn:
            raise ConfigError(f"bn_mode='support' needs fewshot.nn.StepBatchNorm layers, but '{self._torch_bn[0]}' "
                              "is a torch.nn batch norm: convert the model with fewshot.per_step_batchnorm(model, 1)")

    def _forward_at_step(self, params: Params, buffers: Params, sx: torch.Tensor, qx: torch.Tensor,
                         step: torch.Tensor, steps: int) -> torch.Tensor:
        """Query outputs with ``params``, which had ``step`` updates (a tensor: it differs per task).  Only
        per-step batch norm cares which step it was; under ``vmap`` the slot cannot follow a per-task value,
        so every slot's outputs are computed and each task takes its own."""
        if not self.config.per_step_bn:
            return self._query_forward(params, buffers, sx, qx, 0)
        if not under_transform():
            return self._query_forward(params, buffers, sx, qx, int(step))
        out = None
        for t in range(steps + 1):
            at_t = self._query_forward(params, copy_buffers(buffers), sx, qx, t)
            out = at_t if out is None else torch.where(step == t, at_t, out)
        assert out is not None
        return out

    def _support_statistics(self, params: Params, buffers: Params, sx: torch.Tensor, step: int) -> Statistics | None:
        """``bn_mode="support"``: the support set's batch statistics per layer with ``params`` after ``step``
        updates, taken once by a forward of ``sx`` (what ``AdaptedModel`` normalises with); else None."""
        if self.config.bn_mode != "support":
            return None
        self._check_support_mode()
        stats: Statistics = {}
        with norm_training(self.model, True), record_statistics(stats):
            call(self.model, params, copy_buffers(buffers), sx, step=self._bn_step(step))
        return stats

    def _predict_adapted(self, adapted: AdaptedModel, x: torch.Tensor) -> torch.Tensor:
        """``adapted(x)``: the model with ``adapted.params`` (and its support statistics, if any) on ``x``."""
        check_input(self, x, "predict")
        _, buffers = split_state(self.model)
        with norm_training(self.model, self._norm_flag()):
            if adapted.statistics is None:
                return call(self.model, adapted.params, copy_buffers(buffers), x, step=self._bn_step(adapted.steps))
            with given_statistics(adapted.statistics):
                return call(self.model, adapted.params, copy_buffers(buffers), x, step=self._bn_step(adapted.steps))

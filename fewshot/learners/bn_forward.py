"""The batch-norm-mode forward: how a learner runs its model so that ``bn_mode`` means what it says.

Why a module of its own: which statistics normalise a forward (the batch's, the support set's, the
stored ones) and which per-step slot it uses are the one place where the four modes differ; the rest
of the learner (inner loop, task batching, the API) is the same for all of them.  docs/batchnorm.md
is the contract:

- ``"transductive"``: batch statistics always (the original MAML);
- ``"support"``: batch statistics of the task's support set, also for its queries (the support set
  goes through the same forward ahead of them and every layer takes its statistics from it alone),
  so a query's output does not depend on the other queries;
- ``"running"``: batch statistics + running updates in train mode, stored statistics in eval mode;
- ``"frozen"``: stored statistics always, never updated.

Each task runs on its own copy of the buffers; after a training-mode ``meta_loss`` the module's
floating buffers become the mean over tasks of the updated copies (``write_back``).
``adapt``/``predict``/``evaluate`` never write buffers.  With ``per_step_bn`` the forward with
parameters after ``t`` updates uses slot ``t``.

A learner's ``forward_mode`` is a ``NormModeForward`` made from its model and its config as it is
now (evaluation may switch ``bn_mode``); the learner's train/eval mode is passed in where it matters
(``"running"``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, FewshotError
from ..func_transforms import under_transform
from ..functional import Params, call, copy_buffers, split_state
from ..nn.batchnorm import (
    Statistics,
    given_statistics,
    norm_training,
    record_statistics,
    statistics_from,
)


def torch_batch_norms(model: nn.Module) -> list[str]:
    """Names of ``model``'s torch.nn batch-norm layers (``bn_mode="support"`` cannot take statistics
    from them)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def write_back(model: nn.Module, new_bufs: Params) -> None:
    """Set ``model``'s buffers from the per-task copies ``new_bufs`` (``[tasks, ...]`` each): the
    mean over tasks for floating buffers, the first task's for the others (e.g.
    ``num_batches_tracked``)."""
    with torch.no_grad():
        for name, buf in model.named_buffers():
            new = new_bufs[name]
            buf.copy_(new.mean(0) if buf.is_floating_point() else new[0])


class NormModeForward:
    """A learner's forwards under its ``bn_mode`` and per-step slots (see the module docstring).

    ``model`` is run functionally (``fewshot.functional.call``) with the parameters and buffers
    given; ``bn_mode`` and ``per_step_bn`` are the learner config's; ``torch_bn`` names the model's
    torch.nn batch norms (``torch_batch_norms``, found once per model).
    """

    def __init__(self, model: nn.Module, bn_mode: str, per_step_bn: bool,
                 torch_bn: list[str]) -> None:
        self.model, self.bn_mode, self.per_step_bn, self.torch_bn = (model, bn_mode, per_step_bn,
                                                                     torch_bn)

    def bn_step(self, t: int) -> int:
        """The batch-norm slot of the forward with parameters after ``t`` updates."""
        return t if self.per_step_bn else 0

    def batch_statistics(self, training: bool) -> bool:
        """Whether batch norm normalises with batch statistics (``norm_training``) for a learner in
        ``training`` mode."""
        mode = self.bn_mode
        return True if mode in ("transductive",
                                "support") else (training if mode == "running" else False)

    def query(self, params: Params, buffers: Params, sx: torch.Tensor | None, qx: torch.Tensor,
              step: int) -> torch.Tensor:
        """The model's outputs on queries ``qx`` after ``step`` updates.  In ``"support"`` mode the
        support examples ``sx`` go through the same forward ahead of the queries and every
        batch-norm layer takes its statistics from them alone (``statistics_from``), so a query is
        normalised as the support set was at that step and never by the other queries."""
        return self.joint(params, buffers, sx, qx, step)[1]

    def joint(self, params: Params, buffers: Params, sx: torch.Tensor | None, qx: torch.Tensor,
              step: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(support outputs or None, query outputs)``: in ``"support"`` mode the one forward of
        ``query`` also gives the support outputs at that step, as a forward of ``sx`` alone would
        (same statistics), so callers that need both need not run the support set again."""
        if self.bn_mode != "support":
            return None, call(self.model, params, buffers, qx, step=step)
        if sx is None:
            raise FewshotError(
                "bn_mode='support' normalises queries with the support set's batch statistics: "
                "predict with what learner.adapt returns (adapted(x)), or pass the "
                "support "
                "examples, learner.predict(x, params, support_x=support_x)")
        self.check_support_mode()
        n = sx.shape[0]
        with statistics_from(n):
            out = call(self.model, params, buffers, torch.cat([sx, qx]), step=step)
        return out[:n], out[n:]

    def check_support_mode(self) -> None:
        """ConfigError when the model has a torch.nn batch norm, which cannot take the support set's
        statistics."""
        if self.torch_bn:
            raise ConfigError(
                "bn_mode='support' needs fewshot.nn.StepBatchNorm layers, but "
                f"'{self.torch_bn[0]}' "
                "is a torch.nn batch norm: convert the model with "
                "fewshot.per_step_batchnorm(model, 1)")

    def at_step(self, params: Params, buffers: Params, sx: torch.Tensor, qx: torch.Tensor,
                step: torch.Tensor,
                steps: int) -> torch.Tensor:
        """Query outputs with ``params``, which had ``step`` updates (a tensor: it differs per
        task).  Only per-step batch norm cares which step it was; under ``vmap`` the slot cannot
        follow a per-task value, so every slot's outputs are computed and each task takes its
        own."""
        if not self.per_step_bn:
            return self.query(params, buffers, sx, qx, 0)
        if not under_transform():
            return self.query(params, buffers, sx, qx, int(step))
        out = None
        for t in range(steps + 1):
            at_t = self.query(params, copy_buffers(buffers), sx, qx, t)
            out = at_t if out is None else torch.where(step == t, at_t, out)
        assert out is not None
        return out

    def support_statistics(self, params: Params, buffers: Params, sx: torch.Tensor,
                           step: int) -> Statistics | None:
        """``bn_mode="support"``: the support set's batch statistics per layer with ``params`` after
        ``step`` updates, taken once by a forward of ``sx`` (what ``AdaptedModel`` normalises with);
        else None."""
        if self.bn_mode != "support":
            return None
        self.check_support_mode()
        stats: Statistics = {}
        with norm_training(self.model, True), record_statistics(stats):
            call(self.model, params, copy_buffers(buffers), sx, step=self.bn_step(step))
        return stats

    def with_statistics(self, params: Params, statistics: Statistics | None, steps: int,
                        x: torch.Tensor,
                        training: bool) -> torch.Tensor:
        """The model on ``x`` with ``params`` after ``steps`` updates, normalised with
        ``statistics`` (the support set's, ``support_statistics``) when given: what ``AdaptedModel``
        runs."""
        _, buffers = split_state(self.model)
        step = self.bn_step(steps)
        with norm_training(self.model, self.batch_statistics(training)):
            if statistics is None:
                return call(self.model, params, copy_buffers(buffers), x, step=step)
            with given_statistics(statistics):
                return call(self.model, params, copy_buffers(buffers), x, step=step)

"""Task batching: whether a meta-batch's tasks run one by one (the loop) or as one batched
computation (``torch.func.vmap``), and the two runners.

Why a module of its own: the choice depends on facts about the model (torch ``BatchNorm`` layers,
whose second-order gradients are wrong under vmap; dropout, random under vmap; whether every leaf
layer is one that batches well on CPU) and on rules of thumb about the machine, none of which is the
learner's algorithm.  The model facts are read once (``ModelFacts.of``, when the learner is made,
again after ``learner.model_changed()``); per meta-batch only the device, the grad mode and a task's
element count are looked at.  Both runners give the stacked ``TaskResult`` of every task, the same
numbers up to floating-point summation order (tests/fewshot/learners/test_maml.py, loop == vmap).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.func import vmap

from ..errors import ConfigError
from ..functional import Params, copy_buffers
from ..nn.batchnorm import StepBatchNorm
from .result import TaskResult

# auto task batching on CPU: vmap when a task's support + query inputs have at most this many
# elements
# (5-way 1-shot 28x28 with up to ~5 queries per class); larger tasks run faster in the per-task loop
VMAP_MAX_ELEMENTS_CPU = 25_000
# leaf modules for which the batched (vmap) path is faster than the loop on CPU whatever the task
# size
_VMAP_FRIENDLY_CPU = (nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.GELU, nn.ELU,
                      nn.SiLU,
                      nn.Identity, nn.Flatten, StepBatchNorm)

# one task: (buffers, support_x, support_y, query_x, query_y, noise or None) -> its TaskResult
TaskFn = Callable[[Params, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Any], TaskResult]


@dataclass(frozen=True)
class ModelFacts:
    """What the batching choice needs to know about a model, read once from its modules."""

    torch_bn: bool  # a torch.nn batch norm (wrong second-order gradients under vmap)
    dropout: bool  # a dropout layer (random ops under vmap)
    cpu_friendly: bool  # every leaf layer is one that vmap batches faster than the loop on CPU

    @classmethod
    def of(cls, model: nn.Module) -> "ModelFacts":
        modules = list(model.modules())
        leaves = [m for m in modules if not list(m.children())]
        return cls(torch_bn=any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules),
                   dropout=any(isinstance(m, nn.modules.dropout._DropoutNd) for m in modules),
                   cpu_friendly=bool(leaves)
                   and all(isinstance(m, _VMAP_FRIENDLY_CPU) for m in leaves))

    def choose(self, mode: str, checkpoint_steps: int, device: torch.device | str,
               elements_per_task: int | None = None) -> str:
        """``"loop"`` or ``"vmap"`` for ``task_batching=mode`` (with ``checkpoint_steps``) on
        ``device``.

        ``"auto"``: the loop for models with torch ``BatchNorm`` (wrong second-order gradients under
        vmap) or dropout (random ops under vmap), and while recomputing (``checkpoint_steps``, grad
        mode on); otherwise vmap on accelerators, and on CPU vmap for MLP-like models or when a task
        is small (support + query inputs of at most ``VMAP_MAX_ELEMENTS_CPU`` elements), where
        batching the tasks' small operations wins; the loop for larger tasks, whose per-task
        operations are already big. The crossover was measured with bench/peers.py-style runs
        (bench/NOTES.md)."""
        if mode == "vmap" and self.torch_bn:
            raise ConfigError(
                "task_batching='vmap' gives wrong second-order gradients through torch.nn "
                "BatchNorm "
                "layers (PyTorch batch rule): use task_batching='loop', or "
                "fewshot.nn.StepBatchNorm2d / "
                "per_step_batchnorm(model, 1)")
        if mode != "auto":
            return mode
        if checkpoint_steps and torch.is_grad_enabled():  # recomputation runs on the loop only
            return "loop"
        if self.torch_bn or self.dropout:
            return "loop"
        if torch.device(device).type != "cpu":
            return "vmap"
        if self.cpu_friendly:
            return "vmap"
        return ("vmap" if elements_per_task is not None and elements_per_task
                <= VMAP_MAX_ELEMENTS_CPU else "loop")


def run_vmap(task: TaskFn, buffers: Params, batch: Any, noise: torch.Tensor | None, *,
             backward: bool) -> TaskResult:
    """Every task of ``batch`` as one batched computation (each task on its own copy of
    ``buffers``); ``backward``: back-propagate the mean total and return it detached."""
    b = len(batch)
    batched = {k: v.unsqueeze(0).expand(b, *v.shape).clone() for k, v in buffers.items()}
    result = vmap(task, in_dims=(0, 0, 0, 0, 0, None if noise is None else 0))(
        batched, batch.support_x, batch.support_y, batch.query_x, batch.query_y, noise)
    if backward:
        result.total.mean().backward()
        result = result._replace(total=result.total.detach())
    return result


def run_loop(task: TaskFn, buffers: Params, batch: Any, noise: torch.Tensor | None, *,
             backward: bool) -> TaskResult:
    """Every task of ``batch`` in turn (each on its own copy of ``buffers``), stacked; ``backward``:
    back-propagate each task's share of the mean and free its graph before the next task builds its
    own."""
    b = len(batch)
    outs = []
    for i in range(b):
        out = task(copy_buffers(buffers), batch.support_x[i], batch.support_y[i], batch.query_x[i],
                   batch.query_y[i], None if noise is None else noise[i])
        if backward:
            (out.total / b).backward()
            out = out._replace(total=out.total.detach())
        outs.append(out)
    stack = lambda f: torch.stack([getattr(o, f) for o in outs])  # noqa: E731
    return TaskResult(stack("total"), stack("query_loss"), stack("metric"), stack("support_losses"),
                      {k: torch.stack([o.buffers[k] for o in outs]) for k in buffers},
                      stack("step"),
                      {k: torch.stack([o.extras[k] for o in outs]) for k in outs[0].extras})

"""Reptile (Nichol, Achiam & Schulman 2018, "On first-order meta-learning algorithms").

Per task, the inner loop runs ``inner_steps`` updates of the inner optimizer (SGD, or Adam/RMSprop:
``MAMLConfig.inner_optimizer``) from ``theta`` to ``phi``; Reptile's outer update is
``theta <- theta + eps * mean_tasks(phi - theta)``.  Here it is expressed as a **meta-gradient**
``g = mean_tasks(theta - phi)``: ``meta_loss(...).loss.backward()`` puts exactly ``g`` into ``.grad``, so
the ordinary training loop, its meta-optimizer, clipping, schedules, checkpoints and data-parallel
``--nproc`` (which averages gradients over processes) apply unchanged.  With plain SGD of learning rate
``eps`` as the meta-optimizer (``optim.optimizer=sgd``, ``optim.lr=eps``) one step *is* Reptile's; with
Adam (the default meta-optimizer) it is the common variant that feeds ``theta - phi`` to Adam.

The loss returned has the value of the query loss after adaptation (for logging) and the gradient
``theta - phi``: ``q.detach() + S - S.detach()`` with ``S = sum(theta * (theta - phi).detach())``.

Choices (the paper has no support/query split in training):
- ``inner_data="all"`` (default): in training the inner loop adapts on the task's support and query
  examples together, one batch of all the task's data (the paper's "train shots"); ``"support"``
  adapts on the support set only.  Each inner step is one full-batch step (the reference code instead
  cycles mini-batches of ``inner_batch`` examples).  The logged ``loss``/``accuracy`` in training are
  then on the query examples after adapting to them (a fit, not a generalisation measure).
- Evaluation (``evaluate``, ``adapt``, validation) adapts on the support set only, as every learner does.

Reptile is first order by definition: ``first_order`` must stay True, and the settings that act through
a differentiated query loss (``msl``, ``first_order_epochs``, ``learn_inner_lr``) must stay off.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..functional import LossFn, Params, copy_buffers, inner_loop
from ..precision import float32_outputs
from .config import ReptileConfig
from .maml import MAML
from .result import TaskResult
from .spec import LearnerSpec


class Reptile(MAML):
    """Reptile over any ``nn.Module``; ``meta_loss``'s gradient is ``mean_tasks(theta - phi)``.

    Usage: ``learner = Reptile(model, ReptileConfig(inner_steps=5, inner_optimizer="adam", inner_lr=1e-3))``
    """

    config_class = ReptileConfig
    config: ReptileConfig

    def _task(self, params: Params, buffers: Params, sx, sy, qx, qy, noise, *, steps: int, first_order: bool,
              weights: list[float], loss_fn: LossFn, ways: int | None, final_loss: bool = False,
              best: bool = False) -> TaskResult:
        if final_loss:  # evaluation: adapt on the support set, score the queries, as every learner does
            return super()._task(params, buffers, sx, sy, qx, qy, noise, steps=steps, first_order=True,
                                 weights=weights, loss_fn=loss_fn, ways=ways, final_loss=final_loss, best=best)
        x, y = (torch.cat([sx, qx]), torch.cat([sy, qy])) if self.config.inner_data == "all" else (sx, sy)
        res = inner_loop(self.model, params, buffers, x, y, loss_fn=loss_fn, steps=steps, rule=self.rule,
                         names=self.names, noise=noise, first_order=True, per_step_bn=self.config.per_step_bn,
                         keep=[steps], checkpoint=self.config.checkpoint_steps)
        phi = res.at(steps)
        surrogate: Any = sum((params[n] * (params[n] - phi[n]).detach()).sum() for n in self.names)
        with torch.no_grad():
            out = self._query_forward(phi, copy_buffers(res.buffers), sx, qx, self._bn_step(steps))
            q_loss = loss_fn(out, qy)
            out = float32_outputs(out)
            if ways is not None:
                metric = (out.argmax(-1) == qy).to(out.dtype).mean()
            else:
                metric = F.mse_loss(out, qy) if out.shape == qy.shape else q_loss
        total = q_loss + surrogate - surrogate.detach()
        step = torch.full((), steps, dtype=torch.long, device=sx.device)
        return TaskResult(total, q_loss, metric, res.losses, res.buffers, step)


SPECS = (LearnerSpec("reptile", Reptile),)

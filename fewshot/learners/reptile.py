"""Reptile (Nichol, Achiam & Schulman 2018, "On first-order meta-learning algorithms").

Per task, the inner loop runs ``inner_steps`` updates of the inner optimizer (SGD, or Adam/RMSprop:
``MAMLConfig.inner_optimizer``) from ``theta`` to ``phi``; Reptile's outer update is
``theta <- theta + eps * mean_tasks(phi - theta)``.  Here it is expressed as a **meta-gradient**
``g = mean_tasks(theta - phi)``: ``meta_loss(...).loss.backward()`` puts exactly ``g`` into
``.grad``, so the ordinary training loop, its meta-optimizer, clipping, schedules, checkpoints and
data-parallel ``--nproc`` (which averages gradients over processes) apply unchanged.  With plain SGD
of learning rate ``eps`` as the meta-optimizer (``optim.optimizer=sgd``, ``optim.lr=eps``) one step
*is* Reptile's; with Adam (the default meta-optimizer) it is the common variant that feeds ``theta -
phi`` to Adam.

The loss returned has the value of the query loss after adaptation (for logging) and the gradient
``theta - phi``: ``q.detach() + S - S.detach()`` with ``S = sum(theta * (theta - phi).detach())``.

Choices (the paper has no support/query split in training):
- ``inner_data="all"`` (default): in training the inner loop adapts on the task's support and query
  examples together, one batch of all the task's data (the paper's "train shots"); ``"support"``
  adapts on the support set only.  Each inner step is one full-batch step (the reference code
  instead cycles mini-batches of ``inner_batch`` examples).  The logged ``loss``/``accuracy`` in
  training are then on the query examples after adapting to them (a fit, not a generalisation
  measure).
- Evaluation (``evaluate``, ``adapt``, validation) adapts on the support set only, as every learner
  does.

Reptile is first order by definition: ``first_order`` must stay True, and the settings that act
through a differentiated query loss (``msl``, ``first_order_epochs``, ``learn_inner_lr``) must stay
off.
"""
from __future__ import annotations

from typing import Any

import torch

from ..functional import Params, copy_buffers
from .config import ReptileConfig
from .maml import MAML
from .spec import LearnerSpec
from .task import Objective, TaskSettings, TaskTensors


class Reptile(MAML):
    """Reptile over any ``nn.Module``; ``meta_loss``'s gradient is ``mean_tasks(theta - phi)``.

    Usage: ``learner = Reptile(model, ReptileConfig(inner_steps=5, inner_optimizer="adam",
    inner_lr=1e-3))``
    """

    config_class = ReptileConfig
    config: ReptileConfig

    def task_objective(self, params: Params, buffers: Params, task: TaskTensors,
                       settings: TaskSettings) -> Objective:
        """``phi`` = ``steps`` first-order updates from ``theta`` (on the support and query examples
        with ``inner_data="all"``); the objective's gradient is ``theta - phi``, its value the query
        loss at ``phi``."""
        sx, sy, qx, qy = task.support_x, task.support_y, task.query_x, task.query_y
        x, y = sx, sy
        if self.config.inner_data == "all":
            x, y = torch.cat([sx, qx]), torch.cat([sy, qy])
        steps = settings.steps
        res = settings.loop.run(params, buffers, x, y, steps=steps, noise=task.noise,
                                first_order=True, keep=[steps])
        phi = res.at(steps)
        surrogate: Any = sum((params[n] * (params[n] - phi[n]).detach()).sum() for n in self.names)
        with torch.no_grad():
            out = self.forward_mode.query(phi, copy_buffers(res.buffers), sx, qx,
                                          self.forward_mode.bn_step(steps))
            q_loss = settings.loss_fn(out, qy)
        return Objective(q_loss + surrogate - surrogate.detach(), q_loss, out, res.losses,
                         res.buffers)


SPECS = (LearnerSpec("reptile", Reptile),)

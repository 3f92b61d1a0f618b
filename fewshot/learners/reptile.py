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

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..functional import LossFn, Params, copy_buffers, inner_loop
from ..precision import float32_outputs
from .maml import MAML, MAMLConfig
from .result import TaskResult
from .spec import LearnerSpec

INNER_DATA = ("all", "support")


@dataclass
class ReptileConfig(MAMLConfig):
    """Reptile on top of ``MAMLConfig`` (its inner optimizers): ``inner_data`` = ``"all"`` (support +
    query in training) or ``"support"``; ``first_order`` is True and must stay so."""

    first_order: bool = True
    inner_data: Literal["all", "support"] = "all"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.inner_data not in INNER_DATA:
            raise ConfigError(f"inner_data must be 'all' (support + query) or 'support', got {self.inner_data!r}")
        for name, off in (("first_order", True), ("msl", False), ("first_order_epochs", 0), ("learn_inner_lr", False)):
            if getattr(self, name) != off:
                raise ConfigError(f"reptile: {name} must be {off}: Reptile's meta-gradient is theta - phi, with no "
                                  f"differentiated query loss; remove the {name} setting")

    def check_optim(self, optim: Any) -> None:
        """With SGD as the meta-optimizer (``optim``, a ``MetaOptimConfig``) its learning rate is Reptile's
        step size eps: it must be in (0, 1].  ``TrainConfig`` calls this hook of its learner config."""
        optimizer, lr = optim.optimizer, optim.lr
        if optimizer == "sgd" and not 0 < lr <= 1:
            raise ConfigError(f"reptile: with optim.optimizer=sgd, optim.lr is Reptile's step size eps and must be "
                              f"in (0, 1] (theta moves that fraction of the way to phi), got {lr!r}: "
                              "e.g. --set optim.lr=1")


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

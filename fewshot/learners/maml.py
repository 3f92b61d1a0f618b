"""MAML, first-order MAML and MAML++ (MSL, per-step BN, LSLR, derivative-order annealing).

Loss reduction and the meaning of ``inner_lr``: the inner (support) loss is the *mean* over the
support examples (PyTorch's default reduction), and one inner step is ``p - inner_lr * grad(mean
loss)``; ``fewshot.config.presets.protocols`` explains how the papers' alpha maps onto that scale.
"""
from __future__ import annotations

from typing import Any

from ..rules import SGD, Adam, RMSprop, UpdateRule
from .base import GradientLearner
from .config import MAMLPP, MAMLConfig
from .spec import LearnerSpec


class MAML(GradientLearner):
    """Model-agnostic meta-learning over any ``nn.Module``: the update rule is SGD with one learning
    rate per adapted tensor (and per step with LSLR), or the config's ``inner_optimizer`` (Adam,
    RMSprop, SGD with momentum), or the ``rule=`` given.

    Usage: ``learner = MAML(model, MAMLConfig()); learner.meta_loss(batch).loss.backward()``
    """

    config_class = MAMLConfig
    config: MAMLConfig

    def build_rule(self) -> UpdateRule:
        ref, c = self.reference_param(), self.config
        kw: dict[str, Any] = dict(steps=c.inner_steps, learnable=c.learn_inner_lr, dtype=ref.dtype,
                                  device=ref.device)
        if c.inner_optimizer == "adam":
            return Adam(self.names, c.inner_lr, betas=c.inner_betas, eps=c.inner_eps, **kw)
        if c.inner_optimizer == "rmsprop":
            return RMSprop(self.names, c.inner_lr, alpha=c.inner_alpha, eps=c.inner_eps,
                           momentum=c.inner_momentum,
                           centered=c.inner_centered, **kw)
        return SGD(self.names, c.inner_lr, momentum=c.inner_momentum, nesterov=c.inner_nesterov,
                   **kw)


SPECS = (LearnerSpec("maml", MAML), LearnerSpec("fomaml", MAML, forced={"first_order": True}),
         LearnerSpec("mamlpp", MAML, defaults=MAMLPP))

"""Meta-SGD (Li et al. 2017): MAML whose inner step size is a meta-learned tensor per parameter.

One inner step is ``theta - alpha ⊙ grad(mean support loss)``, with ``alpha`` of each adapted
tensor's shape learned together with ``theta`` (it sets both the step size and the direction of
every coordinate).  The paper adapts in one step at training and test time (``inner_steps=1``).
"""
from __future__ import annotations

from ..rules import ElementwiseSGD, UpdateRule
from .base import GradientLearner
from .config import MetaSGDConfig
from .spec import LearnerSpec


class MetaSGD(GradientLearner):
    """Meta-SGD over any ``nn.Module``: the update rule is ``ElementwiseSGD`` (``-alpha ⊙ grad``),
    its alphas meta-learned with the model (``learner.parameters()`` holds both).

    Usage: ``learner = MetaSGD(model, MetaSGDConfig()); learner.meta_loss(batch).loss.backward()``
    """

    config_class = MetaSGDConfig
    config: MetaSGDConfig

    def build_rule(self) -> UpdateRule:
        params = dict(self.model.named_parameters())
        ref = self.reference_param()
        return ElementwiseSGD(self.names, [params[n].shape for n in self.names],
                              self.config.alpha_init,
                              steps=self.config.inner_steps if self.config.per_step_lr else 1,
                              seed=self.config.seed, dtype=ref.dtype, device=ref.device)


SPECS = (LearnerSpec("metasgd", MetaSGD),)

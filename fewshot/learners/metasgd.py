"""Meta-SGD (Li et al. 2017): MAML whose inner step size is a meta-learned tensor per parameter.

One inner step is ``theta - alpha ⊙ grad(mean support loss)``, with ``alpha`` of each adapted tensor's
shape learned together with ``theta`` (it sets both the step size and the direction of every
coordinate).  The paper adapts in one step at training and test time (``inner_steps=1``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..rules import ElementwiseSGD, UpdateRule
from ..rules.metasgd import check_alpha_init
from .base import GradientLearner
from .config import LearnerConfig
from .spec import LearnerSpec


@dataclass
class MetaSGDConfig(LearnerConfig):
    """Meta-SGD's switches on top of ``LearnerConfig``.

    - ``alpha_init``: ``(low, high)``; every entry of alpha starts uniform in that range, drawn from a
      generator seeded by ``seed`` (never the global RNG).  The paper's ``[0.005, 0.1]`` is copied
      unscaled: the paper defines the inner loss as the *mean* over the support set (our scale),
      unlike the MAML code's sum/K (see ``fewshot.config.presets.protocols``).  ``(a, a)`` starts every entry
      at ``a`` (learn2learn's ``MetaSGD(lr=a)``).
    - ``per_step_lr``: one alpha tensor per inner step (steps beyond ``inner_steps`` at evaluation
      reuse the last); default one alpha per element shared by all steps, as in the paper.
    """

    alpha_init: tuple[float, float] = (0.005, 0.1)
    per_step_lr: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.alpha_init = check_alpha_init(self.alpha_init)


class MetaSGD(GradientLearner):
    """Meta-SGD over any ``nn.Module``: the update rule is ``ElementwiseSGD`` (``-alpha ⊙ grad``), its
    alphas meta-learned with the model (``learner.parameters()`` holds both).

    Usage: ``learner = MetaSGD(model, MetaSGDConfig()); learner.meta_loss(batch).loss.backward()``
    """

    config_class = MetaSGDConfig
    config: MetaSGDConfig

    def build_rule(self) -> UpdateRule:
        params = dict(self.model.named_parameters())
        ref = self.reference_param()
        return ElementwiseSGD(self.names, [params[n].shape for n in self.names], self.config.alpha_init,
                              steps=self.config.inner_steps if self.config.per_step_lr else 1,
                              seed=self.config.seed, dtype=ref.dtype, device=ref.device)


SPECS = (LearnerSpec("metasgd", MetaSGD),)

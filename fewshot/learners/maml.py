"""MAML, first-order MAML and MAML++ (MSL, per-step BN, LSLR, derivative-order annealing).

Loss reduction and the meaning of ``inner_lr``: the inner (support) loss is the *mean* over the
support examples (PyTorch's default reduction), and one inner step is ``p - inner_lr * grad(mean
loss)``; ``fewshot.config.presets.protocols`` explains how the papers' alpha maps onto that scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..rules import SGD, UpdateRule
from .base import GradientLearner, LearnerConfig, check_lr


@dataclass
class MAMLConfig(LearnerConfig):
    """MAML's switches on top of ``LearnerConfig``.

    - ``inner_lr``: SGD step size on the mean support loss.
    - ``learn_inner_lr`` (MAML++ LSLR): one learnable LR per adapted tensor per step, initialised to
      ``inner_lr`` (steps beyond ``inner_steps`` at evaluation reuse the last step's LR).
    """

    inner_lr: float = 0.4
    learn_inner_lr: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_lr("inner_lr", self.inner_lr)

    @classmethod
    def mamlpp(cls, **overrides: Any) -> "MAMLConfig":
        """MAML++: MAML with MSL, per-step BN (running statistics), LSLR and DA on (pair it with cosine
        annealing of the meta learning rate for CA)."""
        base: dict[str, Any] = dict(inner_steps=5, inner_lr=0.1, msl=True, msl_epochs=10, learn_inner_lr=True,
                                    per_step_bn=True, bn_mode="running", first_order_epochs=50)
        base.update(overrides)
        return cls(**base)


class MAML(GradientLearner):
    """Model-agnostic meta-learning over any ``nn.Module``: the update rule is SGD with one learning
    rate per adapted tensor (and per step with LSLR).

    Usage: ``learner = MAML(model, MAMLConfig()); learner.meta_loss(batch).loss.backward()``
    """

    config_class = MAMLConfig
    config: MAMLConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._register_load_state_dict_pre_hook(_legacy_inner_lrs)

    def build_rule(self) -> UpdateRule:
        ref = self.reference_param()
        return SGD(self.names, self.config.inner_lr, steps=self.config.inner_steps,
                   learnable=self.config.learn_inner_lr, dtype=ref.dtype, device=ref.device)


def _legacy_inner_lrs(state: dict, prefix: str, *args: Any) -> None:
    """Weights saved before update rules existed keep the LRs under ``inner_lrs``: map to ``rule.lrs``."""
    old = prefix + "inner_lrs"
    if old in state and prefix + "rule.lrs" not in state:
        state[prefix + "rule.lrs"] = state.pop(old)

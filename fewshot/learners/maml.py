"""MAML, first-order MAML and MAML++ (MSL, per-step BN, LSLR, derivative-order annealing).

Loss reduction and the meaning of ``inner_lr``: the inner (support) loss is the *mean* over the
support examples (PyTorch's default reduction), and one inner step is ``p - inner_lr * grad(mean
loss)``; ``fewshot.config.presets.protocols`` explains how the papers' alpha maps onto that scale.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Any

from ..errors import ConfigError
from ..rules import SGD, Adam, RMSprop, UpdateRule
from ..rules.optim import check_betas, check_eps, check_unit
from .base import GradientLearner
from .config import LearnerConfig, check_lr
from .spec import LearnerSpec

INNER_OPTIMIZERS = ("sgd", "adam", "rmsprop")
# the settings each inner optimizer reads (any other inner_* setting must keep its default)
_OPTIMIZER_SETTINGS = {"sgd": {"inner_momentum", "inner_nesterov"}, "adam": {"inner_betas", "inner_eps"},
                       "rmsprop": {"inner_momentum", "inner_alpha", "inner_eps", "inner_centered"}}


@dataclass
class MAMLConfig(LearnerConfig):
    """MAML's switches on top of ``LearnerConfig``.

    - ``inner_lr``: SGD step size on the mean support loss.
    - ``learn_inner_lr`` (MAML++ LSLR): one learnable LR per adapted tensor per step, initialised to
      ``inner_lr`` (steps beyond ``inner_steps`` at evaluation reuse the last step's LR); with any
      ``inner_optimizer``.
    - ``inner_optimizer``: ``"sgd"`` (MAML), ``"adam"`` or ``"rmsprop"`` (``fewshot.rules``, PyTorch's
      formulas, docs/rules.md), with ``inner_momentum`` (sgd, rmsprop; in [0, 1)), ``inner_nesterov``
      (sgd), ``inner_betas`` (adam; each in [0, 1)), ``inner_alpha`` and ``inner_centered`` (rmsprop) and
      ``inner_eps`` (adam, rmsprop; > 0).  A setting the chosen optimizer does not read must keep its
      default, so that no setting is silently ignored.
    """

    inner_lr: float = 0.4
    learn_inner_lr: bool = False
    inner_optimizer: str = "sgd"
    inner_momentum: float = 0.0
    inner_nesterov: bool = False
    inner_betas: tuple[float, float] = (0.9, 0.999)
    inner_eps: float = 1e-8
    inner_alpha: float = 0.99
    inner_centered: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_lr("inner_lr", self.inner_lr)
        if self.inner_optimizer not in INNER_OPTIMIZERS:
            close = difflib.get_close_matches(str(self.inner_optimizer), INNER_OPTIMIZERS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(INNER_OPTIMIZERS)}"
            raise ConfigError(f"unknown inner_optimizer {self.inner_optimizer!r}: {hint}")
        self.inner_betas = check_betas("inner_betas", self.inner_betas)
        self.inner_eps = check_eps("inner_eps", self.inner_eps)
        self.inner_momentum = check_unit("inner_momentum", self.inner_momentum)
        self.inner_alpha = check_unit("inner_alpha", self.inner_alpha)
        if self.inner_nesterov and self.inner_momentum == 0:
            raise ConfigError("inner_nesterov needs inner_momentum > 0 (e.g. inner_momentum=0.9)")
        read = _OPTIMIZER_SETTINGS[self.inner_optimizer]
        for f in fields(self):
            if f.name in _OPTIMIZER_SETTINGS["rmsprop"] | _OPTIMIZER_SETTINGS["adam"] | {"inner_nesterov"} \
                    and f.name not in read and getattr(self, f.name) != f.default:
                users = [k for k, v in _OPTIMIZER_SETTINGS.items() if f.name in v]
                raise ConfigError(f"{f.name} applies to inner_optimizer {' or '.join(users)}, not "
                                  f"{self.inner_optimizer!r}: set inner_optimizer or drop {f.name}")

    @classmethod
    def mamlpp(cls, **overrides: Any) -> "MAMLConfig":
        """MAML++: MAML with MSL, per-step BN (running statistics), LSLR and DA (``MAMLPP``; pair it with
        cosine annealing of the meta learning rate for CA)."""
        return cls(**{**MAMLPP, **overrides})


class MAML(GradientLearner):
    """Model-agnostic meta-learning over any ``nn.Module``: the update rule is SGD with one learning
    rate per adapted tensor (and per step with LSLR), or the config's ``inner_optimizer`` (Adam, RMSprop,
    SGD with momentum), or the ``rule=`` given.

    Usage: ``learner = MAML(model, MAMLConfig()); learner.meta_loss(batch).loss.backward()``
    """

    config_class = MAMLConfig
    config: MAMLConfig

    def build_rule(self) -> UpdateRule:
        ref, c = self.reference_param(), self.config
        kw: dict[str, Any] = dict(steps=c.inner_steps, learnable=c.learn_inner_lr, dtype=ref.dtype, device=ref.device)
        if c.inner_optimizer == "adam":
            return Adam(self.names, c.inner_lr, betas=c.inner_betas, eps=c.inner_eps, **kw)
        if c.inner_optimizer == "rmsprop":
            return RMSprop(self.names, c.inner_lr, alpha=c.inner_alpha, eps=c.inner_eps, momentum=c.inner_momentum,
                           centered=c.inner_centered, **kw)
        return SGD(self.names, c.inner_lr, momentum=c.inner_momentum, nesterov=c.inner_nesterov, **kw)


# MAML++ (Antoniou et al. 2019): MSL, per-step BN (running statistics), LSLR and DA (pair it with cosine
# annealing of the meta learning rate for CA)
MAMLPP = dict(inner_steps=5, inner_lr=0.1, msl=True, msl_epochs=10, learn_inner_lr=True, per_step_bn=True,
              bn_mode="running", first_order_epochs=50)
SPECS = (LearnerSpec("maml", MAML), LearnerSpec("fomaml", MAML, forced={"first_order": True}),
         LearnerSpec("mamlpp", MAML, defaults=MAMLPP))

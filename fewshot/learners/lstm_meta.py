"""The LSTM meta-learner of Ravi & Larochelle (2017): the update rule is a coordinatewise LSTM.

The learner's initialisation (the LSTM's initial cell state ``c_0``) is the model's own parameters,
meta-learned with the LSTM's weights; everything else (batch norm, loop/vmap, MSL, buffers) is the
``GradientLearner`` base.  The rule is ``fewshot.rules.LSTMMetaRule``.

Batch norm: the paper normalises with batch statistics during the episode, i.e. ``bn_mode=
"transductive"`` (the default); docs/batchnorm.md explains how its test-time query normalisation
(that episode's running statistics) relates to the modes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..rules import UpdateRule
from ..rules.lstm import LSTMMetaRule, check_hidden
from ..rules.preprocess import check_p
from .base import GradientLearner
from .config import LearnerConfig
from .spec import LearnerSpec


@dataclass
class LSTMMetaConfig(LearnerConfig):
    """The LSTM meta-learner's switches on top of ``LearnerConfig``.

    - ``hidden``: units of the first LSTM layer (20 in the paper); ``p``: gradient/loss preprocessing
      constant (10 in the paper).
    - ``seed`` (inherited): seeds the generator the LSTM's initial weights are drawn from.
    - ``adapt_norm`` defaults to True: the paper's cell state is every learner parameter, batch-norm
      scale and shift included.
    - ``first_order`` must stay True: the rule treats gradients and losses as constants (the paper
      drops second derivatives), so there is no second-order variant to switch to.
    - ``inner_steps``: the paper uses 12 updates (1-shot) and 8 (5-shot) on mini-ImageNet.
    """

    inner_steps: int = 5
    first_order: bool = True
    adapt_norm: bool = True
    hidden: int = 20
    p: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.first_order:
            raise ConfigError("lstm-meta: first_order must be True: the LSTM meta-learner treats the support "
                              "gradients and loss as constants (Ravi & Larochelle drop second derivatives); "
                              "remove the first_order=False setting")
        check_hidden(self.hidden)
        self.p = check_p(self.p)


class LSTMMetaLearner(GradientLearner):
    """Ravi & Larochelle's meta-learner LSTM over any ``nn.Module`` (its parameters are ``c_0``).

    Usage: ``learner = LSTMMetaLearner(Conv4(3, 5, hidden=32, image_size=84), LSTMMetaConfig(inner_steps=12))``
    """

    config_class = LSTMMetaConfig
    config: LSTMMetaConfig

    def build_rule(self) -> UpdateRule:
        ref = self.reference_param()
        return LSTMMetaRule(self.names, hidden=self.config.hidden, p=self.config.p, seed=self.config.seed,
                            dtype=ref.dtype, device=ref.device)


SPECS = (LearnerSpec("lstm-meta", LSTMMetaLearner),)

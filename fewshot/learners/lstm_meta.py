"""The LSTM meta-learner of Ravi & Larochelle (2017): the update rule is a coordinatewise LSTM.

The learner's initialisation (the LSTM's initial cell state ``c_0``) is the model's own parameters,
meta-learned with the LSTM's weights; everything else (batch norm, loop/vmap, MSL, buffers) is the
``GradientLearner`` base.  The rule is ``fewshot.rules.LSTMMetaRule``.

Batch norm: the paper normalises with batch statistics during the episode, i.e. ``bn_mode=
"transductive"`` (the default); docs/batchnorm.md explains how its test-time query normalisation
(that episode's running statistics) relates to the modes.
"""
from __future__ import annotations

from ..rules import UpdateRule
from ..rules.lstm import LSTMMetaRule
from .base import GradientLearner
from .config import LSTMMetaConfig
from .spec import LearnerSpec


class LSTMMetaLearner(GradientLearner):
    """Ravi & Larochelle's meta-learner LSTM over any ``nn.Module`` (its parameters are ``c_0``).

    Usage: ``learner = LSTMMetaLearner(Conv4(3, 5, hidden=32, image_size=84),
    LSTMMetaConfig(inner_steps=12))``
    """

    config_class = LSTMMetaConfig
    config: LSTMMetaConfig

    def build_rule(self) -> UpdateRule:
        ref = self.reference_param()
        return LSTMMetaRule(self.names, hidden=self.config.hidden, p=self.config.p,
                            seed=self.config.seed,
                            dtype=ref.dtype, device=ref.device)


SPECS = (LearnerSpec("lstm-meta", LSTMMetaLearner),)

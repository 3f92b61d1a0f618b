"""Inner-loop update rules: values every gradient-based learner plugs into ``fewshot.functional.inner_loop``."""
from .base import Chain, Params, State, UpdateRule, apply_updates
from .lstm import LSTMMetaRule, lstm_cell
from .sgd import SGD

__all__ = ["Chain", "LSTMMetaRule", "Params", "SGD", "State", "UpdateRule", "apply_updates", "lstm_cell"]

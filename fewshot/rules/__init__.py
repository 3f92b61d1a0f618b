"""Inner-loop update rules: values every gradient-based learner plugs into ``fewshot.functional.inner_loop``."""
from .base import Chain, Params, State, UpdateRule, apply_updates
from .lstm import LSTMMetaRule, lstm_cell
from .masked import RowMask
from .metasgd import ElementwiseSGD
from .sgd import SGD

__all__ = ["Chain", "ElementwiseSGD", "LSTMMetaRule", "Params", "RowMask", "SGD", "State", "UpdateRule",
           "apply_updates", "lstm_cell"]

"""Inner-loop update rules: values every gradient-based learner plugs into
``fewshot.functional.InnerLoop``."""
from .adam import Adam
from .base import Chain, Params, State, UpdateRule, apply_updates
from .lstm import LSTMMetaRule, lstm_cell
from .masked import RowMask
from .metasgd import ElementwiseSGD
from .newton import NewtonCG
from .optim import LRTableRule, safe_sqrt
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Adam", "Chain", "ElementwiseSGD", "LRTableRule", "LSTMMetaRule", "NewtonCG", "Params",
           "RMSprop",
           "RowMask", "SGD", "State", "UpdateRule", "apply_updates", "lstm_cell", "safe_sqrt"]

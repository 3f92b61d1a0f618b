"""Inner-loop update rules: values every gradient-based learner plugs into ``fewshot.functional.inner_loop``."""
from .base import Chain, Params, State, UpdateRule, apply_updates
from .sgd import SGD

__all__ = ["Chain", "Params", "SGD", "State", "UpdateRule", "apply_updates"]

"""fewshot: optimization-based meta-learning (MAML family) on torch.func.

Usage::

    from fewshot import MAML, MAMLConfig, Conv4
"""
from .errors import AdaptationError, CheckpointError, ConfigError, FewshotError

__version__ = "0.1.0"

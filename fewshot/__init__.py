"""fewshot: optimization-based meta-learning (MAML family) on torch.func.

Usage::

    from fewshot import MAML, MAMLConfig, Conv4
"""
from .errors import AdaptationError, CheckpointError, ConfigError, FewshotError
from .evaluation import Summary, evaluate_learner, summarize
from .training import TrainConfig, apply_overrides, get_preset, list_presets, load_config, train
from .pretrained import load as load_pretrained

__version__ = "0.1.0"

"""The config system: typed ``TrainConfig`` sections, presets, files and ``--set`` overrides.

``from fewshot.config import load_config, apply_overrides``;
``cfg = apply_overrides(load_config("sinusoid-maml"), ["iterations=1000"])``.
"""
from ..meta_optimizer import MetaOptimConfig
from .files import apply_overrides, load_config, read_config_file, save_config
from .manifest import Manifest
from .presets import PRESETS, get_preset, list_presets, paper_result
from .schema import DataConfig, LearnerSection, ModelConfig, TrainConfig, config_from_dict

__all__ = ["DataConfig", "LearnerSection", "Manifest", "MetaOptimConfig", "ModelConfig", "PRESETS",
           "TrainConfig",
           "apply_overrides", "config_from_dict", "get_preset", "list_presets", "load_config",
           "paper_result",
           "read_config_file", "save_config"]

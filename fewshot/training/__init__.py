"""Training: typed configs and presets, the training loop, checkpoints, metrics logs.

Usage::

    from fewshot.training import load_config, apply_overrides, train
    cfg = apply_overrides(load_config("sinusoid-maml"), ["iterations=1000"])
    result = train(cfg, out="runs/sine")
"""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import (
    DataConfig,
    LearnerSection,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    load_config,
    save_config,
)
from .evaluate import evaluate_config
from .loop import TrainResult, train
from .presets import PRESETS, get_preset, list_presets

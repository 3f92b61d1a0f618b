"""fewshot: optimization-based meta-learning (MAML family) on torch.func.

Packages by job: ``learners`` (the algorithms) on ``functional`` and ``nn``; ``config`` (typed run
configs and per-learner presets); ``training`` (building and running a run, checkpoints);
``reporting`` (test reports, publishing, plots); ``pretrained`` (shipped models); ``l2o`` (learned
optimizers); ``commands`` (the ``fewshot`` console script). See docs/architecture.md.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    AdaptationError,
    AdaptationWarning,
    CheckpointError,
    ConfigError,
    FewshotError,
    FewshotWarning,
)
from .functional import InnerLoop, Params, adaptable_names, call, grads_and_loss, split_state
from .learners import (
    ANIL,
    IMAML,
    MAML,
    AdaptedModel,
    ANILConfig,
    GradientLearner,
    IMAMLConfig,
    LearnerConfig,
    LearnerSpec,
    LSTMMetaConfig,
    LSTMMetaLearner,
    MAMLConfig,
    MetaOutput,
    MetaSGD,
    MetaSGDConfig,
    MTNet,
    MTNetConfig,
    Objective,
    Reptile,
    ReptileConfig,
    TaskSettings,
    TaskTensors,
    build_learner,
    register_learner,
)
from .meta_optimizer import MetaOptimConfig, build_meta_optimizer, fit_schedule
from .nn import (
    MLP,
    Conv4,
    FullyConnected,
    LeNet,
    StepBatchNorm,
    StepBatchNorm1d,
    StepBatchNorm2d,
    inner_step,
    per_step_batchnorm,
    statistics_from,
)
from .rules import (
    SGD,
    Adam,
    Chain,
    ElementwiseSGD,
    LSTMMetaRule,
    RMSprop,
    RowMask,
    UpdateRule,
    apply_updates,
)
from .schedules import msl_weights
from .scoring import Summary, evaluate_learner, summarize

# The application's names (training runs, configs and presets, the model store), loaded on first
# use, so
# that `import fewshot` loads the algorithms alone: name -> (module, attribute).
_APPLICATION = {
    "TrainConfig": ("fewshot.config", "TrainConfig"),
    "apply_overrides": ("fewshot.config", "apply_overrides"),
    "get_preset": ("fewshot.config", "get_preset"),
    "list_presets": ("fewshot.config", "list_presets"),
    "load_config": ("fewshot.config", "load_config"),
    "load_pretrained": ("fewshot.pretrained", "load"),
    "train": ("fewshot.training", "train"),
    "tune_allocator": ("fewshot.runtime.allocator", "tune_allocator"),
}

if TYPE_CHECKING:
    from .config import TrainConfig, apply_overrides, get_preset, list_presets, load_config
    from .pretrained import load as load_pretrained
    from .runtime.allocator import tune_allocator
    from .training import train


def __getattr__(name: str) -> Any:
    """``fewshot.train``, ``fewshot.TrainConfig``, ``fewshot.load_pretrained``...: imported when
    first used; ``fewshot.pretrained`` and the other application modules, as submodules,
    likewise."""
    if name in _APPLICATION:
        module, attribute = _APPLICATION[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'fewshot' has no attribute {name!r}") from None


# The one place the version is written: setup.py reads it from here; `fewshot --version` prints it.
__version__ = "0.1.0"

"""fewshot: optimization-based meta-learning (MAML family) on torch.func.

Packages by job: ``learners`` (the algorithms) on ``functional`` and ``nn``; ``config`` (typed run
configs and per-learner presets); ``training`` (building and running a run, checkpoints);
``reporting`` (test reports, publishing, plots); ``pretrained`` (shipped models); ``l2o`` (learned
optimizers); ``commands`` (the ``fewshot`` console script). See docs/architecture.md.
"""
from .allocator import tune_allocator
from .config import TrainConfig, apply_overrides, get_preset, list_presets, load_config
from .errors import AdaptationError, AdaptationWarning, CheckpointError, ConfigError, FewshotError, FewshotWarning
from .functional import Params, adaptable_names, call, grads_and_loss, inner_loop, split_state
from .learners import (
    ANIL,
    IMAML,
    MAML,
    AdaptedModel,
    ANILConfig,
    GradientLearner,
    IMAMLConfig,
    LearnerConfig,
    LSTMMetaConfig,
    LSTMMetaLearner,
    MAMLConfig,
    MetaOutput,
    MetaSGD,
    MetaSGDConfig,
    MTNet,
    MTNetConfig,
    Reptile,
    ReptileConfig,
    build_learner,
    register_learner,
)
from .meta_optimizer import MetaOptimConfig, build_meta_optimizer, fit_schedule
from .nn import (
    MLP,
    Conv4,
    FullyConnected,
    StepBatchNorm,
    StepBatchNorm1d,
    StepBatchNorm2d,
    inner_step,
    per_step_batchnorm,
    statistics_from,
)
from .pretrained import load as load_pretrained
from .rules import SGD, Adam, Chain, ElementwiseSGD, LSTMMetaRule, RMSprop, RowMask, UpdateRule, apply_updates
from .schedules import msl_weights
from .scoring import Summary, evaluate_learner, summarize
from .training import train

# The one place the version is written: setup.py reads it from here; `fewshot --version` prints it.
__version__ = "0.1.0"

"""fewshot: optimization-based meta-learning (MAML family) on torch.func.

Usage::

    from fewshot import MAML, MAMLConfig, Conv4
"""
from .errors import AdaptationError, CheckpointError, ConfigError, FewshotError
from .functional import Params, adaptable_names, call, inner_loop, loss_and_grads, msl_weights, split_state
from .rules import SGD, Chain, LSTMMetaRule, UpdateRule, apply_updates
from .nn import MLP, Conv4, FullyConnected, StepBatchNorm, StepBatchNorm1d, StepBatchNorm2d, inner_step, per_step_batchnorm
from .learners import MAML, GradientLearner, LearnerConfig, LSTMMetaConfig, LSTMMetaLearner, MAMLConfig, MetaOutput, build_learner, register_learner
from .optim import MetaOptimConfig, build_meta_optimizer
from .evaluation import Summary, evaluate_learner, summarize
from .training import TrainConfig, apply_overrides, get_preset, list_presets, load_config, train
from .pretrained import load as load_pretrained

__version__ = "0.1.0"

"""Learned optimizers: "Learning to learn by gradient descent by gradient descent" (Andrychowicz et
al. 2016).

Usage::

    from fewshot.l2o import LearnedOptimizer
    from fewshot.pretrained import load_learned_optimizer
    opt = LearnedOptimizer(model.parameters(), net=load_learned_optimizer("l2o-mnist"))

Saving and loading learned optimizers is the model store's (``fewshot.pretrained``); the paper's
experiments are ``fewshot.reporting.l2o_experiments`` (``fewshot l2o experiment``).
"""
from ..rules.preprocess import preprocess_gradients
from .baselines import BASELINES, LR_GRID, Tuned, make_baseline, tune_baselines
from .metatrain import EpochRecord, MetaTrainConfig, MetaTrainResult, meta_train, unroll
from .net import CoordinateLSTM, LSTMOptimizerConfig
from .optimizer import LearnedOptimizer
from .problems import MLPFamily, ProblemBatch, ProblemFamily, QuadraticFamily
from .trajectory import final_loss, run_trajectory

__all__ = [
    "BASELINES", "LR_GRID", "Tuned", "make_baseline", "tune_baselines", "EpochRecord",
    "MetaTrainConfig",
    "MetaTrainResult", "meta_train", "unroll", "CoordinateLSTM", "LSTMOptimizerConfig",
    "LearnedOptimizer",
    "preprocess_gradients", "MLPFamily", "ProblemBatch", "ProblemFamily", "QuadraticFamily",
    "final_loss",
    "run_trajectory",
]

"""Learned optimizers: "Learning to learn by gradient descent by gradient descent" (Andrychowicz et
al. 2016).

Usage::

    from fewshot.l2o import LearnedOptimizer
    opt = LearnedOptimizer(model.parameters(), weights="l2o-mnist")
"""
from ..rules.preprocess import preprocess_gradients
from .baselines import BASELINES, LR_GRID, Tuned, make_baseline, tune_baselines
from .metatrain import EpochRecord, MetaTrainConfig, MetaTrainResult, meta_train, unroll
from .net import CoordinateLSTM, LSTMOptimizerConfig
from .optimizer import LearnedOptimizer
from .problems import MLPFamily, ProblemBatch, ProblemFamily, QuadraticFamily
from .trajectory import final_loss, run_trajectory
from .weights import load_learned_optimizer, save_learned_optimizer

__all__ = [
    "BASELINES", "LR_GRID", "Tuned", "make_baseline", "tune_baselines", "EpochRecord",
    "MetaTrainConfig",
    "MetaTrainResult", "meta_train", "unroll", "CoordinateLSTM", "LSTMOptimizerConfig",
    "LearnedOptimizer",
    "preprocess_gradients", "MLPFamily", "ProblemBatch", "ProblemFamily", "QuadraticFamily",
    "final_loss",
    "run_trajectory", "load_learned_optimizer", "save_learned_optimizer",
]

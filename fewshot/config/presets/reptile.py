"""Reptile (Nichol, Achiam & Schulman 2018) on Omniglot, with the paper's transductive results.

Protocol, as recalled from the paper's appendix and its reference code (openai/supervised-reptile,
``run_omniglot.sh``), **from memory**: Conv4-64 with stride-2 convolutions (as MAML's Omniglot
model), transductive batch norm; inner loop Adam with beta1 = 0, lr 1e-3 (5-way) / 5e-4 (20-way), 5
/ 10 iterations on 10 training shots per class; meta-batch 5; outer step size 1 annealed to 0 over
100,000 (5-way) / 200,000 (20-way) iterations; evaluation: 50 inner iterations, one query per class.

Choices where we differ or the paper leaves it open (each testable in the config):
- 10 training shots = the support shots plus ``queries = 10 - shots`` query examples per class,
  adapted on together (``inner_data="all"``); evaluation adapts on the support shots only.
- each inner iteration is one full-batch step on those examples (the reference code cycles
  mini-batches of 10 / 20 examples, one pass in all);
- the outer step size is SGD's lr (``optim.optimizer=sgd``, ``optim.lr=1``), annealed by the cosine
  schedule to 0 (the paper anneals linearly).
Numbers: Reptile + transduction (the paper's Omniglot table).
"""
from __future__ import annotations

from functools import partial

from ...meta_optimizer import MetaOptimConfig
from ..schema import DataConfig, LearnerSection, TrainConfig
from .protocols import OMNIGLOT_SETTINGS, Recipe, omniglot, setting_name

LEARNER = "reptile"
LEARNERS = (LEARNER,)
TRAIN_SHOTS = 10  # examples per class the inner loop sees in training

PAPER = {  # (ways, shots): test accuracy %, transductive
    (5, 1): "97.68 ± 0.04",
    (5, 5): "99.48 ± 0.06",
    (20, 1): "89.43 ± 0.14",
    (20, 5): "97.12 ± 0.32",
}


def classification(ways: int, shots: int) -> TrainConfig:
    _, model = omniglot(ways, shots)
    data = DataConfig(dataset="omniglot", size=28, ways=ways, shots=shots,
                      queries=TRAIN_SHOTS - shots,
                      eval_queries=1)
    five = ways == 5
    section = LearnerSection(LEARNER, {"inner_steps": 5 if five else 10, "eval_steps": 50,
                                       "inner_optimizer": "adam",
                                       "inner_lr": 1e-3 if five else 5e-4,
                                       "inner_betas": (0.0, 0.999), "inner_data": "all"})
    optim = MetaOptimConfig(optimizer="sgd", lr=1.0, cosine=True, min_lr=0.0)
    return TrainConfig(iterations=100_000 if five else 200_000, meta_batch=5, data=data,
                       model=model,
                       learner=section, optim=optim)


def recipes() -> list[Recipe]:
    return [
        Recipe(setting_name("omniglot", ways, shots, LEARNER), LEARNER,
               partial(classification, ways, shots),
                   paper=PAPER[(ways, shots)]) for ways, shots in OMNIGLOT_SETTINGS]

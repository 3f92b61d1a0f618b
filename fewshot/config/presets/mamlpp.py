"""MAML++ (Antoniou, Edwards & Storkey 2019): every technique on, with the paper's results beside them.

5 inner steps at train and test, MSL, derivative-order annealing, LSLR, per-step batch norm and cosine
annealing of the meta LR 1e-3 -> 1e-5 (the Omniglot value, used for both data sets), 100 epochs x 500
iterations (50,000), meta-batch 8 (Omniglot) / 2 (mini-ImageNet, 48 filters). Inner LR 0.1 (Omniglot) /
0.01 (mini-ImageNet), already on our mean-loss scale (see ``protocols``).
"""
from __future__ import annotations

from functools import partial

from ...meta_optimizer import MetaOptimConfig
from ..schema import LearnerSection, TrainConfig
from .protocols import MINI_IMAGENET_SETTINGS, OMNIGLOT_SETTINGS, Recipe, mini_imagenet, omniglot, setting_name

LEARNER = "mamlpp"

PAPER = {  # (dataset, ways, shots): test accuracy %
    ("omniglot", 5, 1): "99.47",
    ("omniglot", 5, 5): "99.93",
    ("omniglot", 20, 1): "97.65",
    ("omniglot", 20, 5): "99.33",
    ("mini-imagenet", 5, 1): "52.15 ± 0.26 (std over 3 seeds)",
    ("mini-imagenet", 5, 5): "68.32 ± 0.44 (std over 3 seeds)",
}


def classification(dataset: str, ways: int, shots: int) -> TrainConfig:
    if dataset == "omniglot":
        (data, model), inner_lr, meta_batch, clip = omniglot(ways, shots), 0.1, 8, None
    else:
        (data, model), inner_lr, meta_batch, clip = mini_imagenet(ways, shots, filters=48), 0.01, 2, 10.0
    section = LearnerSection(LEARNER, {"inner_steps": 5, "inner_lr": inner_lr, "eval_steps": 5})
    optim = MetaOptimConfig(lr=1e-3, cosine=True, min_lr=1e-5, clip_value=clip)
    return TrainConfig(iterations=50000, iterations_per_epoch=500, meta_batch=meta_batch, data=data, model=model,
                       learner=section, optim=optim)


def recipes() -> list[Recipe]:
    return [Recipe(setting_name(dataset, ways, shots, LEARNER), LEARNER,
                   partial(classification, dataset, ways, shots), paper=PAPER.get((dataset, ways, shots)))
            for dataset, settings in (("omniglot", OMNIGLOT_SETTINGS), ("mini-imagenet", MINI_IMAGENET_SETTINGS))
            for ways, shots in settings]

"""MT-net (Lee & Choi 2018), from the reference code's experiment scripts, with the paper's results
beside them.  T-net (``tnet``) is the same recipe with the mask off; the paper's T-net ablation
numbers are not in our reference table, so no published result is attached to it.

Omniglot: 1 inner step (10 at test), 40,000 iterations, meta-batch 32 (5-way) / 16 (20-way),
reference alpha 0.4 (5-way) / 0.1 (20-way) on MAML's sum/K loss scale (``mean_loss_lr``: 2.0 here).
mini-ImageNet: 5 steps (10 at test), 60,000 iterations, meta-batch 4 (1-shot) / 2 (5-shot), alpha
0.01, clipping to ±10. The paper reports Omniglot 1-shot and mini-ImageNet 1-shot only; the 5-shot
recipes use the same settings.  Sinusoid: the MAML regression data with the reference script's
meta-batch 4.
"""
from __future__ import annotations

from functools import partial

from ...meta_optimizer import MetaOptimConfig
from ..schema import LearnerSection, TrainConfig
from .protocols import (
    MINI_IMAGENET_SETTINGS,
    OMNIGLOT_SETTINGS,
    Recipe,
    mean_loss_lr,
    mini_imagenet,
    omniglot,
    setting_name,
    sinusoid,
)

LEARNERS = ("mtnet", "tnet")

PAPER = {  # (dataset, ways, shots): test accuracy %
    ("omniglot", 5, 1): "99.5",
    ("omniglot", 20, 1): "96.2",
    ("mini-imagenet", 5, 1): "51.70 ± 1.84",
}


def classification(learner: str, dataset: str, ways: int, shots: int) -> TrainConfig:
    if dataset == "omniglot":
        (data, model) = omniglot(ways, shots)
        options = {"inner_steps": 1, "eval_steps": 10,
                   "inner_lr": mean_loss_lr(0.4 if ways == 5 else 0.1, ways)}
        iterations, meta_batch, clip = 40000, (32 if ways == 5 else 16), None
    else:
        (data, model) = mini_imagenet(ways, shots)
        options = {"inner_steps": 5, "eval_steps": 10, "inner_lr": mean_loss_lr(0.01, ways)}
        iterations, meta_batch, clip = 60000, (4 if shots == 1 else 2), 10.0
    return TrainConfig(iterations=iterations, meta_batch=meta_batch, data=data, model=model,
                       learner=LearnerSection(learner, options),
                       optim=MetaOptimConfig(lr=1e-3, clip_value=clip))


def regression(learner: str) -> TrainConfig:
    data, model = sinusoid()
    return TrainConfig(iterations=60000, meta_batch=4, val_every=1000, data=data, model=model,
                       learner=LearnerSection(learner,
                                              {"inner_steps": 1, "eval_steps": 10,
                                               "inner_lr": 0.01}),
                       optim=MetaOptimConfig(lr=1e-3))


def recipes_for(learner: str, paper: dict[tuple[str, int, int], str]) -> list[Recipe]:
    out = [Recipe(setting_name(dataset, ways, shots, learner), learner,
                  partial(classification, learner, dataset, ways, shots),
                  paper=paper.get((dataset, ways, shots)))
           for dataset, settings in (("omniglot", OMNIGLOT_SETTINGS),
                                     ("mini-imagenet", MINI_IMAGENET_SETTINGS))
           for ways, shots in settings]
    out.append(Recipe(f"sinusoid-{learner}", learner, partial(regression, learner)))
    return out


def recipes() -> list[Recipe]:
    return recipes_for("mtnet", PAPER) + recipes_for("tnet", {})

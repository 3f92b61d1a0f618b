"""Meta-SGD (Li, Zhou, Chen & Li 2017): one adaptation step at training and test, a learned
per-element learning rate initialised uniformly in [0.005, 0.1], with the paper's results beside
them.

The data, backbone, meta-batch, iteration count and meta-optimizer follow the MAML protocol the
paper compares against (Omniglot meta-batch 32 for 5-way, 16 for 20-way; mini-ImageNet 4 / 2 with
clipping to ±10; Adam 1e-3, 60,000 iterations).  The paper's inner loss is a mean over the support
examples, our scale, so the alpha range is used as it is (see ``protocols`` for the scale).
Sinusoid: meta-batch 4.
"""
from __future__ import annotations

from functools import partial

from ...meta_optimizer import MetaOptimConfig
from ..schema import LearnerSection, TrainConfig
from .protocols import (
    MINI_IMAGENET_SETTINGS,
    OMNIGLOT_SETTINGS,
    Recipe,
    mini_imagenet,
    omniglot,
    setting_name,
    sinusoid,
)

LEARNER = "metasgd"
LEARNERS = (LEARNER,)

PAPER = {  # (dataset, ways, shots): test accuracy %
    ("omniglot", 5, 1): "99.53 ± 0.26",
    ("omniglot", 5, 5): "99.93 ± 0.09",
    ("omniglot", 20, 1): "95.9",
    ("omniglot", 20, 5): "99.0",
    ("mini-imagenet", 5, 1): "50.47 ± 1.87",
    ("mini-imagenet", 5, 5): "64.03 ± 0.94",
}
OPTIONS = {"inner_steps": 1, "eval_steps": 1, "alpha_init": (0.005, 0.1)}


def classification(dataset: str, ways: int, shots: int) -> TrainConfig:
    if dataset == "omniglot":
        (data, model), meta_batch, clip = omniglot(ways, shots), (32 if ways == 5 else 16), None
    else:
        (data, model), meta_batch, clip = mini_imagenet(ways, shots), (4 if shots == 1 else 2), 10.0
    return TrainConfig(iterations=60000, meta_batch=meta_batch, data=data, model=model,
                       learner=LearnerSection(LEARNER, dict(OPTIONS)),
                       optim=MetaOptimConfig(lr=1e-3, clip_value=clip))


def regression() -> TrainConfig:
    data, model = sinusoid()
    return TrainConfig(iterations=60000, meta_batch=4, val_every=1000, data=data, model=model,
                       learner=LearnerSection(LEARNER, dict(OPTIONS)),
                       optim=MetaOptimConfig(lr=1e-3))


def recipes() -> list[Recipe]:
    out = [
        Recipe(setting_name(dataset, ways, shots, LEARNER), LEARNER,
               partial(classification, dataset, ways, shots),
                  paper=PAPER[(dataset, ways, shots)])
           for dataset, settings in (("omniglot", OMNIGLOT_SETTINGS),
                                     ("mini-imagenet", MINI_IMAGENET_SETTINGS))
           for ways, shots in settings]
    out.append(
        Recipe("sinusoid-metasgd", LEARNER, regression,
               paper="MSE 0.90 ± 0.16 (5-shot; unconfirmed)"))
    return out

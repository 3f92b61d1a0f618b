"""The LSTM meta-learner (Ravi & Larochelle 2017), with the paper's results beside them.

mini-ImageNet 5-way, Conv4-32 with max-pool, 15 queries per class: 12 updates for 1-shot (75,000
episodes) and 8 for 5-shot (50,000), the same number at test, Adam 1e-3, gradient-norm clipping to
0.25, one episode per meta-update (our reading of the authors' code: unconfirmed).  The paper has no
Omniglot numbers; the Omniglot recipes keep its update counts (12 for 1-shot, 8 for 5-shot) and
optimizer on the MAML Omniglot data protocol (meta-batch 32 for 5-way, 16 for 20-way, 60,000
iterations).  The gradient and loss inputs of the LSTM carry no graph (the paper's first-order cut).
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
)

LEARNER = "lstm-meta"
LEARNERS = (LEARNER,)

PAPER = {  # (dataset, ways, shots): test accuracy %
    ("mini-imagenet", 5, 1): "43.44 ± 0.77",
    ("mini-imagenet", 5, 5): "60.60 ± 0.71",
}


def classification(dataset: str, ways: int, shots: int) -> TrainConfig:
    updates = 12 if shots == 1 else 8
    if dataset == "omniglot":
        (data, model), meta_batch, iterations = omniglot(ways,
                                                         shots), (32 if ways == 5 else 16), 60000
    else:
        (data, model), meta_batch, iterations = mini_imagenet(ways,
                                                              shots), 1, (75000 if shots == 1
                                                                          else 50000)
    return TrainConfig(iterations=iterations, meta_batch=meta_batch, data=data, model=model,
                       learner=LearnerSection(LEARNER,
                                              {"inner_steps": updates, "eval_steps": updates}),
                       optim=MetaOptimConfig(lr=1e-3, clip_norm=0.25))


def recipes() -> list[Recipe]:
    return [
        Recipe(setting_name(dataset, ways, shots, LEARNER), LEARNER,
               partial(classification, dataset, ways, shots),
                   paper=PAPER.get((dataset, ways, shots)))
            for dataset, settings in (("omniglot", OMNIGLOT_SETTINGS),
                                      ("mini-imagenet", MINI_IMAGENET_SETTINGS))
            for ways, shots in settings]

"""What the recipes share: the benchmarks' data/model protocols, the ``Recipe`` record, and the
one canonical explanation of the inner learning-rate scale.

**Inner learning-rate scale.** Our learners take one inner step as ``p - inner_lr * grad(loss)``
where the support loss is PyTorch's *mean* over the support examples. The MAML reference code's
classification loss is the sum over the N*K support examples divided by K, i.e. N times a
mean-reduced loss, so its alpha corresponds to ``inner_lr = N * alpha`` here (:func:`mean_loss_lr`):
Omniglot 5-way alpha=0.4 -> 2.0, 20-way alpha=0.1 -> 2.0, mini-ImageNet 5-way alpha=0.01 -> 0.05.
MAML++'s reference code already uses a mean-reduced loss, so its values (0.1 Omniglot, 0.01
mini-ImageNet) are used as they are. Regression (MSE) is mean-reduced in both, so the sinusoid
alpha=0.01 is copied.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..schema import DataConfig, ModelConfig, TrainConfig

# Benchmark settings, (ways, shots), that have published numbers.
OMNIGLOT_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))
MINI_IMAGENET_SETTINGS = ((5, 1), (5, 5))


@dataclass(frozen=True)
class Recipe:
    """One preset: how to build its TrainConfig, and the published result it reproduces (None if
    none)."""

    name: str
    learner: str  # a name in fewshot.learners.LEARNERS
    build: Callable[[], TrainConfig]
    paper: str | None = None


def mean_loss_lr(alpha: float, ways: int) -> float:
    """The reference code's classification alpha on our mean-reduced loss scale (see the module
    docstring)."""
    return alpha * ways


# Omniglot's split families (episodes.omniglot): Vinyals' lists, or the MAML code's random character
# split
OMNIGLOT_SPLITS = {"vinyals": ("train", "val", "test"),
                   "maml": ("maml-train", "maml-val", "maml-test")}


def omniglot(ways: int, shots: int, splits: str = "vinyals") -> tuple[DataConfig, ModelConfig]:
    """Omniglot 28x28, queries per class = shots (the MAML reference protocol); Conv4-64 with
    stride-2 convolutions as in the MAML Omniglot reference code, transductive batch norm (learner
    default). ``splits``: ``"vinyals"`` (default) or ``"maml"`` (the MAML code's split, rotations
    drawn per task)."""
    train, val, test = OMNIGLOT_SPLITS[splits]
    return (
        DataConfig(dataset="omniglot", size=28, ways=ways, shots=shots, queries=shots,
                   train_split=train,
                       val_split=val, test_split=test),
            ModelConfig(backbone="conv4", hidden=64, pool=False))


def mini_imagenet(ways: int, shots: int, filters: int = 32) -> tuple[DataConfig, ModelConfig]:
    """mini-ImageNet 84x84 (Ravi splits), 15 queries per class; Conv4 with max-pool (32 filters in
    MAML)."""
    return (DataConfig(dataset="mini-imagenet", size=84, ways=ways, shots=shots, queries=15),
            ModelConfig(backbone="conv4", hidden=filters, pool=True))


def sinusoid() -> tuple[DataConfig, ModelConfig]:
    """Sinusoid regression (MAML paper ranges), 5-shot, 5 query points in training and 100 at test;
    MLP 40-40."""
    return (DataConfig(dataset="sinusoid", shots=5, queries=5, eval_queries=100),
            ModelConfig(backbone="mlp", hidden_sizes=[40, 40]))


def setting_name(dataset: str, ways: int, shots: int, learner: str) -> str:
    """``omniglot-5w1s-maml``."""
    return f"{dataset}-{ways}w{shots}s-{learner}"

"""Named training presets: every learner x setting that has a published number (see REFERENCES.md).

Usage::

    cfg = get_preset("omniglot-5w1s-maml")
    names = list(PRESETS)          # 'omniglot-5w1s-maml', ..., 'sinusoid-maml'

Protocols (MAML paper + reference code; MAML++ paper + HowToTrainYourMAML):

* Omniglot 28x28, Conv4-64 (stride-2 convs as in the MAML Omniglot reference), transductive BN.
  5-way: 1 inner step (3 at test), meta-batch 32; 20-way: 5 inner steps (5 at test), meta-batch 16;
  60,000 iterations, Adam 1e-3. Queries per class = shots (the reference code's protocol).
* mini-ImageNet 84x84, Conv4-32 with max-pool, 5 inner steps (10 at test), 15 queries per class,
  meta-batch 4 (1-shot) / 2 (5-shot), 60,000 iterations, meta-gradient clipped to +-10.
* MAML++: 5 inner steps at train and test, all techniques on (MSL, DA, LSLR, per-step BN, cosine
  annealing 1e-3 -> 1e-5, the Omniglot value, used for both), 100 epochs x 500 iterations, meta-batch 8 (Omniglot) / 2 (mini-ImageNet,
  48 filters).
* Sinusoid: MLP 40-40, 5-shot (5 query points), 1 inner step alpha=0.01, meta-batch 25, 70,000 its.

**Inner learning rate scale.** The MAML reference code's classification inner loss is the sum over
the N*K support examples divided by K, i.e. N x a mean-reduced loss. Our learners use PyTorch's
mean-reduced cross-entropy, so the paper's alpha is multiplied by N here: 5-way alpha=0.4 -> 2.0,
20-way alpha=0.1 -> 2.0, mini-ImageNet 5-way alpha=0.01 -> 0.05. MAML++'s reference code already
uses a mean-reduced loss, so its values (0.1 Omniglot, 0.01 mini-ImageNet) are used as they are.
Regression (MSE) is mean-reduced in both, so alpha=0.01 is copied.

A new learner (Meta-SGD, MT-net, LSTM meta-learner) is one more entry in ``_LEARNER_VARIANTS``.
"""
from __future__ import annotations

import difflib
from typing import Callable

from ..errors import ConfigError
from .config import DataConfig, LearnerSection, ModelConfig, OptimConfig, TrainConfig

# --- per-setting protocol -------------------------------------------------------------------------

_OMNIGLOT = {
    # (ways, shots): meta_batch, inner_steps, eval_steps, paper alpha (sum/K scale)
    (5, 1): dict(meta_batch=32, steps=1, eval_steps=3, alpha=0.4),
    (5, 5): dict(meta_batch=32, steps=1, eval_steps=3, alpha=0.4),
    (20, 1): dict(meta_batch=16, steps=5, eval_steps=5, alpha=0.1),
    (20, 5): dict(meta_batch=16, steps=5, eval_steps=5, alpha=0.1),
}
_MINI = {
    (5, 1): dict(meta_batch=4, steps=5, eval_steps=10, alpha=0.01),
    (5, 5): dict(meta_batch=2, steps=5, eval_steps=10, alpha=0.01),
}


def _learner(name: str, **options) -> LearnerSection:
    return LearnerSection(name, options)


def _maml_family(variant: str, dataset: str, ways: int, shots: int) -> TrainConfig:
    if dataset == "omniglot":
        p = _OMNIGLOT[(ways, shots)]
        data = DataConfig(dataset="omniglot", size=28, ways=ways, shots=shots, queries=shots)
        model = ModelConfig(backbone="conv4", hidden=64, pool=False)
    else:
        p = _MINI[(ways, shots)]
        data = DataConfig(dataset="mini-imagenet", size=84, ways=ways, shots=shots, queries=15)
        model = ModelConfig(backbone="conv4", hidden=32, pool=True)
    optim = OptimConfig(lr=1e-3, clip_value=10.0 if dataset == "mini-imagenet" else None)
    if variant in ("maml", "fomaml"):
        learner = _learner(variant, inner_steps=p["steps"], inner_lr=p["alpha"] * ways,
                           eval_steps=p["eval_steps"], first_order=(variant == "fomaml"))
        return TrainConfig(iterations=60000, meta_batch=p["meta_batch"], data=data, model=model,
                           learner=learner, optim=optim)
    # MAML++
    mamlpp_alpha = 0.1 if dataset == "omniglot" else 0.01
    if dataset == "mini-imagenet":
        model = ModelConfig(backbone="conv4", hidden=48, pool=True)
    optim = OptimConfig(lr=1e-3, cosine=True, min_lr=1e-5,
                        clip_value=optim.clip_value)
    learner = _learner("mamlpp", inner_steps=5, inner_lr=mamlpp_alpha, eval_steps=5)
    return TrainConfig(iterations=50000, iterations_per_epoch=500,
                       meta_batch=8 if dataset == "omniglot" else 2, data=data, model=model,
                       learner=learner, optim=optim)


def _sinusoid(variant: str) -> TrainConfig:
    data = DataConfig(dataset="sinusoid", shots=5, queries=5, eval_queries=100, train_split="train",
                      val_split="val", test_split="test")
    model = ModelConfig(backbone="mlp", hidden_sizes=[40, 40])
    learner = _learner(variant, inner_steps=1, inner_lr=0.01, eval_steps=10,
                       first_order=(variant == "fomaml"))
    return TrainConfig(iterations=70000, meta_batch=25, val_every=1000, data=data, model=model,
                       learner=learner, optim=OptimConfig(lr=1e-3))


# --- the registry -----------------------------------------------------------------------------------

_LEARNER_VARIANTS = ("maml", "fomaml", "mamlpp")


def _build_registry() -> dict[str, Callable[[], TrainConfig]]:
    reg: dict[str, Callable[[], TrainConfig]] = {}
    for variant in _LEARNER_VARIANTS:
        for ways, shots in _OMNIGLOT:
            reg[f"omniglot-{ways}w{shots}s-{variant}"] = (
                lambda v=variant, w=ways, s=shots: _maml_family(v, "omniglot", w, s))
        for ways, shots in _MINI:
            reg[f"mini-imagenet-{ways}w{shots}s-{variant}"] = (
                lambda v=variant, w=ways, s=shots: _maml_family(v, "mini-imagenet", w, s))
    reg["sinusoid-maml"] = lambda: _sinusoid("maml")
    return reg


PRESETS: dict[str, Callable[[], TrainConfig]] = _build_registry()


def get_preset(name: str) -> TrainConfig:
    """A fresh TrainConfig for preset ``name`` (ConfigError with a suggestion if unknown)."""
    try:
        factory = PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PRESETS), n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else "run `fewshot train --list-presets` to see them"
        raise ConfigError(f"unknown preset or config file '{name}': {hint}") from None
    cfg = factory()
    cfg.preset = name
    return cfg


def list_presets() -> list[str]:
    """Names of every preset, sorted."""
    return sorted(PRESETS)

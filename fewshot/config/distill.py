"""What a dataset-distillation run is (``fewshot distill``): ``DistillConfig`` and the presets that
reproduce the papers' MNIST settings.

The presets follow the authors' code (Wang et al. 2018, github SsnL/dataset-distillation; soft
labels: Sucholutsky & Schonlau 2019, github ilia10000/dataset-distillation): LeNet, MNIST normalised
with its mean and standard deviation, images drawn from N(0, 1), step sizes started at 0.02 (soft
labels: 0.01), Adam (lr 0.01, betas (0.5, 0.999)) halving its learning rate every 40 epochs (soft:
35) of 59 real batches of 1024, for 400 epochs (soft: 350; the soft settings are those of the soft
authors' scripts, their README's 10-image command keeps the hard-label ones: docs/bilevel.md).
One step beyond them: the fixed-init presets (``*-distill-10``, ``*-distill-10-soft``) learn a
step size per layer and step (``per_layer_step_sizes``), which from the same initialisation trains
a better network than the papers' one per step (docs/bilevel.md); ``--set
per_layer_step_sizes=false`` is the papers' recipe.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Literal

from ..checks import check_count
from ..errors import ConfigError

# real batches of 1024 in one pass over the 60,000 training images (the authors' epoch)
BATCHES_PER_EPOCH = 59
DATASETS = ("mnist", "fashion-mnist")


@dataclass
class DistillConfig:
    """A distillation run.  ``steps`` batches of ``images_per_class`` images per class, reused for
    ``epochs`` passes (one learned step size per step of each pass); ``init="fixed"``: one network
    initialisation, drawn from ``seed`` and shipped with the images; ``"random"``: a fresh one for
    each of ``inits_per_iteration`` networks at every outer iteration. ``per_layer_step_sizes``: one
    learned step size per step and parameter tensor (LeNet: 10) instead of one per step (on in the
    fixed-init presets, off in the random-init ones, which keep the papers' recipe).

    Every ``val_every`` iterations the run measures its data on ``val_images`` training images (a
    fixed draw; with random initialisations, ``val_inits`` fixed fresh networks): the curve in
    ``metrics.jsonl`` and the state with the best score in ``best.pt``.  The papers distil all
    60,000 training images and hold none out, so this measures fit to the training images, never
    the test set; ``fewshot pretrained publish`` chooses between ``best.pt`` and ``last.pt`` by
    it."""

    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    images_per_class: int = 1
    steps: int = 1
    epochs: int = 3
    init: Literal["fixed", "random"] = "fixed"
    inits_per_iteration: int = 1
    soft_labels: bool = False
    per_layer_step_sizes: bool = False
    step_size: float = 0.02
    lr: float = 0.01
    betas: tuple[float, float] = (0.5, 0.999)
    iterations: int = 400 * BATCHES_PER_EPOCH
    decay_every: int = 40 * BATCHES_PER_EPOCH
    decay_factor: float = 0.5
    batch_size: int = 1024
    checkpoint_every: int = 500
    log_every: int = 50
    eval_inits: int = 100
    val_every: int = 500
    val_images: int = 10_000
    val_inits: int = 10
    seed: int = 0
    data_root: str | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        for name in ("images_per_class", "steps", "epochs", "inits_per_iteration", "iterations",
                     "decay_every", "batch_size", "checkpoint_every", "log_every", "eval_inits",
                     "val_every", "val_images", "val_inits"):
            check_count(getattr(self, name), name)
        for name in ("step_size", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.decay_factor <= 1:
            raise ConfigError(f"decay_factor must be in (0, 1], got {self.decay_factor!r}")
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}: choose one of "
                              f"{', '.join(DATASETS)}")

    @property
    def images(self) -> int:
        """The number of distilled images: steps x classes x images per class."""
        return self.steps * 10 * self.images_per_class


def _preset(dataset: str, **kw: object) -> DistillConfig:
    return DistillConfig(dataset=dataset, **kw)  # type: ignore[arg-type]


def _presets() -> dict[str, DistillConfig]:
    out = {}
    for dataset in DATASETS:
        out[f"{dataset}-distill-10"] = _preset(dataset, per_layer_step_sizes=True)
        out[f"{dataset}-distill-100-random"] = _preset(dataset, steps=10, init="random")
        out[f"{dataset}-distill-10-soft"] = _preset(
            dataset, soft_labels=True, per_layer_step_sizes=True, step_size=0.01,
            iterations=350 * BATCHES_PER_EPOCH, decay_every=35 * BATCHES_PER_EPOCH)
    for name, cfg in out.items():
        cfg.preset = name
    return out


DISTILL_PRESETS = _presets()

# the papers' MNIST test accuracy (%) for each preset's setting
PAPER_RESULTS = {
    "mnist-distill-10": "93.76 (Wang et al. 2018: 10 images, fixed initialisation)",
    "mnist-distill-100-random": "79.5 ± 8.1 (Wang et al. 2018: 100 images, 200 random "
                                "initialisations)",
    "mnist-distill-10-soft": "> 96 (Sucholutsky & Schonlau 2019: 10 images, learned soft labels)",
}


def get_distill_preset(name: str) -> DistillConfig:
    """A fresh copy of preset ``name`` (``mnist-distill-10``, ``mnist-distill-100-random``,
    ``mnist-distill-10-soft`` and their ``fashion-mnist-`` twins)."""
    if name not in DISTILL_PRESETS:
        close = difflib.get_close_matches(name, list(DISTILL_PRESETS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "choose one of " + ", ".join(
            sorted(DISTILL_PRESETS))
        raise ConfigError(f"unknown distillation preset '{name}': {hint}")
    return dataclasses.replace(DISTILL_PRESETS[name])

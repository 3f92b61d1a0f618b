"""MAML (Finn, Abbeel & Levine 2017): the reference code's protocols, with the paper's results
beside them.

Omniglot: 60,000 iterations, Adam 1e-3; 5-way 1 inner step (3 at test), meta-batch 32; 20-way 5
steps (5 at test), meta-batch 16. mini-ImageNet: 5 inner steps (10 at test), meta-batch 4 (1-shot) /
2 (5-shot), meta-gradient clipped to ±10. Sinusoid: 1 inner step, meta-batch 25, 70,000 iterations.
Alphas are on the reference code's scale; ``mean_loss_lr`` converts them (see ``protocols``).

First-order MAML (``fomaml``, section 5.2) runs the same protocols with ``first_order=True``; the
paper reports first-order results on mini-ImageNet only.

MAML++ (``mamlpp``; Antoniou, Edwards & Storkey 2019): every technique on, 5 inner steps at train
and test, MSL, derivative-order annealing, LSLR, per-step batch norm and cosine annealing of the
meta LR 1e-3 -> 1e-5 (the Omniglot value, used for both data sets), 100 epochs x 500 iterations
(50,000), meta-batch 8 (Omniglot) / 2 (mini-ImageNet, 48 filters). Inner LR 0.1 (Omniglot) / 0.01
(mini-ImageNet), already on our mean-loss scale (see ``protocols``).

The Omniglot presets compare like for like with the paper: the MAML code's split (1100 / 100 / 423
characters drawn at random, each class of a task rotated by a random multiple of 90 degrees: splits
``maml-*``), not Vinyals'. They train non-transductively (``bn_mode="support"``: a query is
normalised with its task's support statistics, so a prediction never depends on the other queries)
and are tested in both modes (the paper's numbers are transductive); the meta learning rate is
cosine-annealed to 1e-5 over the run, and checkpoints are validated on 1000 fixed episodes, so that
model selection is not noise (a 95% interval of about ±0.7 points at 97%).
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

LEARNERS = ("maml", "fomaml", "mamlpp")

# (ways, shots): meta_batch, inner_steps, eval_steps, reference alpha, paper result (test accuracy
# %)
OMNIGLOT = {
    (5, 1): (32, 1, 3, 0.4, "98.7 ± 0.4"),
    (5, 5): (32, 1, 3, 0.4, "99.9 ± 0.1"),
    (20, 1): (16, 5, 5, 0.1, "95.8 ± 0.3"),
    (20, 5): (16, 5, 5, 0.1, "98.9 ± 0.2"),
}
MINI_IMAGENET = {
    (5, 1): (4, 5, 10, 0.01, "48.70 ± 1.84"),
    (5, 5): (2, 5, 10, 0.01, "63.11 ± 0.92"),
}
SINUSOID_PAPER = "MSE 0.67 / 0.38 / 0.35 after 1 / 5 / 10 steps"
FIRST_ORDER_PAPER = {  # (dataset, ways, shots): test accuracy %
    ("mini-imagenet", 5, 1): "48.07 ± 1.75",
    ("mini-imagenet", 5, 5): "63.15 ± 0.91",
}
MAMLPP_PAPER = {  # (dataset, ways, shots): test accuracy %
    ("omniglot", 5, 1): "99.47",
    ("omniglot", 5, 5): "99.93",
    ("omniglot", 20, 1): "97.65",
    ("omniglot", 20, 5): "99.33",
    ("mini-imagenet", 5, 1): "52.15 ± 0.26 (std over 3 seeds)",
    ("mini-imagenet", 5, 5): "68.32 ± 0.44 (std over 3 seeds)",
}


def classification(learner: str, dataset: str, ways: int, shots: int, *,
                   paper_protocol: bool = False,
                   **options: object) -> TrainConfig:
    """The MAML protocol of one benchmark setting for ``learner`` (``maml`` or a variant such as
    ``fomaml``); ``paper_protocol``: on Omniglot, the MAML split, support-mode training, cosine
    annealing and 1000 validation episodes (module docstring)."""
    table = OMNIGLOT if dataset == "omniglot" else MINI_IMAGENET
    meta_batch, steps, eval_steps, alpha, _ = table[(ways, shots)]
    paper = paper_protocol and dataset == "omniglot"
    if dataset == "omniglot":
        data, model = omniglot(ways, shots, splits="maml" if paper else "vinyals")
    else:
        data, model = mini_imagenet(ways, shots)
    settings: dict[str, object] = {"inner_steps": steps, "inner_lr": mean_loss_lr(alpha, ways),
                                   "eval_steps": eval_steps,
                                   **({"bn_mode": "support"} if paper else {}), **options}
    optim = MetaOptimConfig(lr=1e-3, clip_value=10.0 if dataset == "mini-imagenet" else None,
                            cosine=paper,
                            min_lr=1e-5)
    return TrainConfig(iterations=60000, meta_batch=meta_batch, val_episodes=1000 if paper else 200,
                       data=data,
                       model=model, learner=LearnerSection(learner, settings), optim=optim)


def regression(learner: str, **options: object) -> TrainConfig:
    """The MAML sinusoid protocol: 1 inner step of 0.01 (10 at test), meta-batch 25, 70,000
    iterations."""
    data, model = sinusoid()
    section = LearnerSection(learner,
                             {"inner_steps": 1, "inner_lr": 0.01, "eval_steps": 10, **options})
    return TrainConfig(iterations=70000, meta_batch=25, val_every=1000, data=data, model=model,
                       learner=section,
                       optim=MetaOptimConfig(lr=1e-3))


def mamlpp(dataset: str, ways: int, shots: int) -> TrainConfig:
    """MAML++'s protocol of one benchmark setting (module docstring)."""
    if dataset == "omniglot":
        (data, model), inner_lr, meta_batch, clip = omniglot(ways, shots), 0.1, 8, None
    else:
        (data, model), inner_lr, meta_batch, clip = mini_imagenet(ways, shots,
                                                                  filters=48), 0.01, 2, 10.0
    section = LearnerSection("mamlpp", {"inner_steps": 5, "inner_lr": inner_lr, "eval_steps": 5})
    optim = MetaOptimConfig(lr=1e-3, cosine=True, min_lr=1e-5, clip_value=clip)
    return TrainConfig(iterations=50000, iterations_per_epoch=500, meta_batch=meta_batch, data=data,
                       model=model,
                       learner=section, optim=optim)


def recipes() -> list[Recipe]:
    out: list[Recipe] = []
    for dataset, table in (("omniglot", OMNIGLOT), ("mini-imagenet", MINI_IMAGENET)):
        for (ways, shots), row in table.items():
            out.append(Recipe(setting_name(dataset, ways, shots, "maml"), "maml",
                              partial(classification, "maml", dataset, ways, shots,
                                      paper_protocol=True),
                              paper=str(row[-1])))
            out.append(Recipe(setting_name(dataset, ways, shots, "fomaml"), "fomaml",
                              partial(classification, "fomaml", dataset, ways, shots,
                                      first_order=True),
                              paper=FIRST_ORDER_PAPER.get((dataset, ways, shots))))
    out.append(Recipe("sinusoid-maml", "maml", partial(regression, "maml"), paper=SINUSOID_PAPER))
    out += [
        Recipe(setting_name(dataset, ways, shots, "mamlpp"), "mamlpp",
               partial(mamlpp, dataset, ways, shots),
                   paper=MAMLPP_PAPER.get((dataset, ways, shots)))
            for dataset, settings in (("omniglot", OMNIGLOT_SETTINGS),
                                      ("mini-imagenet", MINI_IMAGENET_SETTINGS))
            for ways, shots in settings]
    return out

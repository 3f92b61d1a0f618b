"""First-order MAML (Finn et al. 2017, section 5.2): MAML's protocols with ``first_order=True``.

The paper reports first-order results on mini-ImageNet only.
"""
from __future__ import annotations

from functools import partial

from . import maml
from .protocols import Recipe, setting_name

LEARNER = "fomaml"

PAPER = {  # (dataset, ways, shots): test accuracy %
    ("mini-imagenet", 5, 1): "48.07 ± 1.75",
    ("mini-imagenet", 5, 5): "63.15 ± 0.91",
}


def recipes() -> list[Recipe]:
    out: list[Recipe] = []
    for dataset, table in (("omniglot", maml.OMNIGLOT), ("mini-imagenet", maml.MINI_IMAGENET)):
        for ways, shots in table:
            out.append(Recipe(setting_name(dataset, ways, shots, LEARNER), LEARNER,
                              partial(maml.classification, LEARNER, dataset, ways, shots, first_order=True),
                              paper=PAPER.get((dataset, ways, shots))))
    return out

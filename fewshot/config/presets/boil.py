"""BOIL (Oh, Yoo, Kim & Yun 2021): MAML's mini-ImageNet protocol with only the body adapted.

The head is frozen in the inner loop (meta-learned in the outer loop only).  Choice: the paper's own
schedule is not restated here; these presets are ``maml.classification`` with learner ``boil`` (Conv4-32,
5 inner steps, 10 at test, meta-batch 4 / 2, Adam 1e-3, clipping), so BOIL and MAML differ only in the
adapted names.  Numbers: 4conv, from REFERENCES.md (a LibFewShot reproduction of the paper's table).
"""
from __future__ import annotations

from functools import partial

from . import maml
from .protocols import Recipe, setting_name

LEARNER = "boil"

PAPER = {  # (ways, shots): mini-ImageNet test accuracy %
    (5, 1): "49.61 ± 0.16",
    (5, 5): "66.45 ± 0.37",
}


def recipes() -> list[Recipe]:
    return [Recipe(setting_name("mini-imagenet", ways, shots, LEARNER), LEARNER,
                   partial(maml.classification, LEARNER, "mini-imagenet", ways, shots), paper=paper)
            for (ways, shots), paper in PAPER.items()]

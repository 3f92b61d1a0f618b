"""ANIL (Raghu, Raghu, Bengio & Vinyals 2020): MAML's protocols with only the head adapted.

The paper keeps MAML's hyper-parameters and reference code (Omniglot 20-way; mini-ImageNet 5-way),
so these are ``maml.classification`` with learner ``anil``; the 5-way Omniglot settings have no ANIL
number in the paper and are given for comparison with MAML.  The numbers are the paper's results as
recalled **from memory** (not checked against the paper here): verify before quoting.

BOIL (Oh, Yoo, Kim & Yun 2021, ``boil``): MAML's mini-ImageNet protocol with only the body adapted
(the head is meta-learned in the outer loop only). The paper's own schedule is not restated here:
these are ``maml.classification`` with learner ``boil`` (Conv4-32, 5 inner steps, 10 at test,
meta-batch 4 / 2, Adam 1e-3, clipping), so BOIL and MAML differ only in the adapted names. Numbers:
4conv, as the LibFewShot reproduction of the paper's table reports them.
"""
from __future__ import annotations

from functools import partial

from . import maml
from .protocols import Recipe, setting_name

LEARNERS = ("anil", "boil")

PAPER = {  # (dataset, ways, shots): test accuracy % (from memory, see the module docstring)
    ("omniglot", 20, 1): "96.2 ± 0.5",
    ("omniglot", 20, 5): "98.0 ± 0.3",
    ("mini-imagenet", 5, 1): "46.7 ± 0.4",
    ("mini-imagenet", 5, 5): "61.5 ± 0.5",
}
BOIL_PAPER = {  # (ways, shots): mini-ImageNet test accuracy %
    (5, 1): "49.61 ± 0.16",
    (5, 5): "66.45 ± 0.37",
}


def recipes() -> list[Recipe]:
    anil = [Recipe(setting_name(dataset, ways, shots, "anil"), "anil",
                   partial(maml.classification, "anil", dataset, ways, shots),
                   paper=PAPER.get((dataset, ways, shots)))
            for dataset, table in (("omniglot", maml.OMNIGLOT),
                                   ("mini-imagenet", maml.MINI_IMAGENET))
            for ways, shots in table]
    return anil + [Recipe(setting_name("mini-imagenet", ways, shots, "boil"), "boil",
                          partial(maml.classification, "boil", "mini-imagenet", ways, shots),
                          paper=paper)
                   for (ways, shots), paper in BOIL_PAPER.items()]

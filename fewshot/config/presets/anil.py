"""ANIL (Raghu, Raghu, Bengio & Vinyals 2020): MAML's protocols with only the head adapted.

The paper keeps MAML's hyper-parameters and reference code (Omniglot 20-way; mini-ImageNet 5-way), so
these are ``maml.classification`` with learner ``anil``; the 5-way Omniglot settings have no ANIL
number in the paper and are given for comparison with MAML.  The numbers are the paper's results as
recalled **from memory** (they are not in REFERENCES.md): verify before quoting.
"""
from __future__ import annotations

from functools import partial

from . import maml
from .protocols import Recipe, setting_name

LEARNER = "anil"

PAPER = {  # (dataset, ways, shots): test accuracy % (from memory, see the module docstring)
    ("omniglot", 20, 1): "96.2 ± 0.5",
    ("omniglot", 20, 5): "98.0 ± 0.3",
    ("mini-imagenet", 5, 1): "46.7 ± 0.4",
    ("mini-imagenet", 5, 5): "61.5 ± 0.5",
}


def recipes() -> list[Recipe]:
    return [Recipe(setting_name(dataset, ways, shots, LEARNER), LEARNER,
                   partial(maml.classification, LEARNER, dataset, ways, shots), paper=PAPER.get((dataset, ways, shots)))
            for dataset, table in (("omniglot", maml.OMNIGLOT), ("mini-imagenet", maml.MINI_IMAGENET))
            for ways, shots in table]

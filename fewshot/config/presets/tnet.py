"""T-net (Lee & Choi 2018): MT-net's recipes with the mask off (every row adapted).  The paper's T-net
ablation numbers are not in our reference table, so no published result is attached."""
from __future__ import annotations

from .mtnet import recipes_for
from .protocols import Recipe

LEARNER = "tnet"


def recipes() -> list[Recipe]:
    return recipes_for(LEARNER, {})

"""Named training presets: every learner x benchmark setting that has a published number.

One module per learner family, as ``fewshot.learners`` declares them (``maml.py``: maml, fomaml,
mamlpp; ``anil.py``: anil, boil; ``mtnet.py``: mtnet, tnet; ``imaml.py``: imaml, imaml-hf;
``metasgd.py``, ``lstm_meta.py``, ``reptile.py``), each with the papers' numbers beside its recipes;
``protocols.py`` holds what they share (data/model protocols, the inner-LR scale). **A new learner
is one entry:** write ``presets/<learner>.py`` with ``LEARNERS = ("<its names in
fewshot.learners.LEARNERS>",)`` and ``recipes() -> list[Recipe]`` (reusing ``maml.classification``
if its protocol is MAML's), and add the module to ``RECIPE_MODULES`` below.
"""
from __future__ import annotations

import difflib

from ...errors import ConfigError
from ...learners import LEARNERS
from ..schema import TrainConfig
from . import anil, imaml, lstm_meta, maml, metasgd, mtnet, reptile
from .protocols import Recipe

# one module per learner family, as fewshot.learners declares them (a method and its variants)
RECIPE_MODULES = (maml, metasgd, mtnet, lstm_meta, anil, reptile, imaml)


def _collect() -> dict[str, Recipe]:
    found: dict[str, Recipe] = {}
    for module in RECIPE_MODULES:
        for recipe in module.recipes():
            if recipe.learner not in LEARNERS or recipe.learner not in module.LEARNERS:
                raise RuntimeError(
                    f"preset {recipe.name!r} of {module.__name__} is for learner "
                    f"{recipe.learner!r}, "
                    "which is not one of the module's LEARNERS in "
                    "fewshot.learners.LEARNERS")
            if recipe.name in found:
                raise RuntimeError(f"preset {recipe.name!r} is defined twice")
            found[recipe.name] = recipe
    return found


PRESETS: dict[str, Recipe] = _collect()


def get_preset(name: str) -> TrainConfig:
    """A fresh TrainConfig for preset ``name`` (ConfigError with a suggestion if unknown)."""
    try:
        recipe = PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PRESETS), n=1, cutoff=0.5)
        hint = (f"did you mean '{close[0]}'?" if close
                else "run `fewshot train --list-presets` to see them")
        raise ConfigError(f"unknown preset or config file '{name}': {hint}") from None
    cfg = recipe.build()
    cfg.preset = name
    return cfg


def paper_result(name: str) -> str | None:
    """The published result preset ``name`` reproduces, as the paper writes it (None if none or
    unknown)."""
    recipe = PRESETS.get(name)
    return recipe.paper if recipe is not None else None


def list_presets() -> list[str]:
    """Names of every preset, sorted."""
    return sorted(PRESETS)


__all__ = ["PRESETS", "RECIPE_MODULES", "Recipe", "get_preset", "list_presets", "paper_result"]

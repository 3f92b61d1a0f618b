"""iMAML-HF (Rajeswaran et al. 2019): iMAML with a Hessian-free inner solver, the paper's best Omniglot numbers.

The protocol is the ``imaml`` presets' (data, Conv4, meta-batch, Adam 1e-3, ``lam`` 2.0, 5 CG steps for the
meta-gradient); the inner solver settings are ours, as the paper names the method but not its step counts:
5 damped Newton steps (``fewshot.rules.NewtonCG``, damping ``lam``, full steps, at test too) of 5 CG
iterations each, 25 support Hessian-vector products in all, against iMAML-GD's 16 gradient steps.
"""
from __future__ import annotations

from functools import partial

from . import imaml
from .protocols import Recipe, setting_name

LEARNER = "imaml-hf"


def options(ways: int) -> dict[str, object]:
    """The learner settings of a ``ways``-way Omniglot preset (module docstring)."""
    return {**imaml.options(ways), "inner_solver": "hf", "inner_steps": 5, "eval_steps": 5, "inner_lr": 1.0,
            "hf_cg_steps": 5}


def recipes() -> list[Recipe]:
    return [Recipe(setting_name("omniglot", ways, shots, LEARNER), LEARNER,
                   partial(imaml.classification, ways, shots, LEARNER, options(ways)), paper=f"{hf} (iMAML-HF)")
            for (ways, shots), (hf, _) in imaml.PAPER.items()]

"""Hyperparameters learned by gradient: bilevel optimisation on the functional core.

The inner problem is training (``InnerProblem``: a loss, an update rule, steps, the data);
the outer objective a validation loss of the trained parameters.  Three ways to the
hypergradient: reverse-mode through the whole unroll (``unrolled_hypergradient``, checkpointed),
through its last K steps (``truncate=K``), or implicit differentiation at the inner solution
(``implicit_hypergradient``, Neumann series or conjugate gradient); hypergradient descent on one
training run with either (``implicit_hpo``, ``unrolled_hpo``) and dataset distillation
(``fewshot.bilevel.distillation``).  docs/bilevel.md says when
each is right.
"""
from .hpo import HPOResult, implicit_hpo, unrolled_hpo
from .implicit import implicit_hypergradient, neumann_inverse_hvp
from .problem import InnerProblem, UnrollResult, unroll
from .unrolled import Hypergradient, unrolled_hypergradient

__all__ = ["HPOResult", "Hypergradient", "InnerProblem", "UnrollResult", "implicit_hpo",
           "implicit_hypergradient", "neumann_inverse_hvp", "unroll", "unrolled_hpo",
           "unrolled_hypergradient"]

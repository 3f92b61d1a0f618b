"""Hyperparameters learned by gradient: bilevel optimisation on the functional core.

The inner problem is training (``InnerProblem``: a loss, an update rule, steps, the data);
the outer objective a validation loss of the trained parameters.  Three ways to the
hypergradient: reverse-mode through the whole unroll (``unrolled_hypergradient``, checkpointed),
through its last K steps (``truncate=K``), or implicit differentiation at the inner solution
(``implicit_hypergradient``, Neumann series or conjugate gradient).  docs/bilevel.md says when
each is right.
"""
from .implicit import implicit_hypergradient, neumann_inverse_hvp
from .problem import InnerProblem, UnrollResult, unroll
from .unrolled import Hypergradient, unrolled_hypergradient

__all__ = ["Hypergradient", "InnerProblem", "UnrollResult", "implicit_hypergradient",
           "neumann_inverse_hvp", "unroll", "unrolled_hypergradient"]

"""Gradient preprocessing of Andrychowicz et al. (2016), appendix A (shared by the learned optimizer
in ``fewshot.l2o`` and the LSTM meta-learner's update rule).

Each gradient coordinate becomes two numbers that separate magnitude from sign::

    (log|g| / p, sign g)   if |g| >= exp(-p)
    (-1, exp(p) * g)       otherwise

so the optimizer sees inputs of order one whatever the gradient's scale. The two branches meet at
``|g| = exp(-p)``: both give ``(-1, sign g)``.
"""
from __future__ import annotations

import math

import torch

from ..checks import check_number


def check_p(p: float) -> float:
    """``p`` as a float, or ConfigError unless it is a finite number > 0 (validated here only: the
    LSTM rule and ``LSTMMetaConfig`` call this)."""
    return check_number(p, "preprocessing p", above=0, note=" (the paper uses 10)")


def preprocess_gradients(grad: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """``grad`` of any shape -> ``[*grad.shape, 2]`` by the two-branch formula above."""
    p = check_p(p)
    magnitude = grad.abs()
    big = magnitude >= math.exp(-p)
    # log of the clamped magnitude: the small branch never uses it, and the clamp keeps it finite.
    log_part = torch.where(big, torch.log(magnitude.clamp_min(math.exp(-p))) / p,
                           torch.full_like(grad, -1.0))
    sign_part = torch.where(big, torch.sign(grad), grad * math.exp(p))
    return torch.stack((log_part, sign_part), dim=-1)

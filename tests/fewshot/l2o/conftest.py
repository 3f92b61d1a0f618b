"""Fixtures of the learned-optimizer tests: a tiny trained net (the MNIST store is the session's,
tests/conftest.py)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def small_net():
    """A randomly initialized CoordinateLSTM (seeded), float64 for exact comparisons."""
    from fewshot.l2o import CoordinateLSTM, LSTMOptimizerConfig

    torch.manual_seed(0)
    return CoordinateLSTM(LSTMOptimizerConfig(hidden=8)).double()

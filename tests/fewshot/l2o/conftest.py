"""Fixtures of the learned-optimizer tests: a real MNIST + Fashion-MNIST store and a tiny trained
net."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def mnist_root(fewshot_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp data root with real MNIST and Fashion-MNIST stores, built once from
    ``$FEWSHOT_RAW_DATA``."""
    from episodes.idx import prepare_mnist

    root = tmp_path_factory.mktemp("l2o-data")
    for name in ("mnist", "fashion-mnist"):
        prepare_mnist(name, fewshot_data / name, root, quiet=True)
    return root


@pytest.fixture
def small_net():
    """A randomly initialized CoordinateLSTM (seeded), float64 for exact comparisons."""
    from fewshot.l2o import CoordinateLSTM, LSTMOptimizerConfig

    torch.manual_seed(0)
    return CoordinateLSTM(LSTMOptimizerConfig(hidden=8)).double()

"""Shared test fixtures: the real-data folder and a real Omniglot store built once per session.

The raw data sets come from ``$FEWSHOT_RAW_DATA``, else they are downloaded (md5-checked) into a
cache (see ``tests/raw_data.py``). When neither works, tests that need real data are SKIPPED with
one reason, or FAIL when ``FEWSHOT_REQUIRE_DATA=1`` (CI sets it, so CI never silently drops them).
Usage (in a test): ``def test_x(omniglot_root): split = load_split("omniglot", "train",
omniglot_root)``.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest

from tests.raw_data import RawDataMissing, find_raw_data

# One torch thread per test process unless the caller chose (as CI on 2 cores and a developer's
# quick loop
# beside other jobs both want: the suite's nets are too small for intra-op threads, which then spin
# against
# each other and against anything else running). Set before torch starts its thread pool; the
# subprocesses
# the tests start inherit it, and so the CLI's default CPU layout (processes) applies only where a
# test
# removes the variable to test that layout.
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:  # imported first by a plugin: its pool read the variable already
        sys.modules["torch"].set_num_threads(1)


@pytest.fixture(scope="session")
def fewshot_data() -> Path:
    """The folder of raw data sets (``$FEWSHOT_RAW_DATA``, else the download cache), to be read and
    never written; skips (fails under ``FEWSHOT_REQUIRE_DATA=1``) with one reason when there is
    none."""
    try:
        return find_raw_data(os.environ)
    except RawDataMissing as exc:
        if os.environ.get("FEWSHOT_REQUIRE_DATA") == "1":
            pytest.fail(f"{exc} (FEWSHOT_REQUIRE_DATA=1: required)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def omniglot_prepared(fewshot_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path,
                                                                                             str]:
    """``(root, stdout)``: the one real 28x28 Omniglot store of the session, built by
    ``fewshot prepare omniglot --source <raw data>/omniglot --root <temp>`` (the command's output
    kept for the test of that command). Tests read it and never rebuild it."""
    from fewshot.cli import main

    root = tmp_path_factory.mktemp("fewshot-data")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(
            ["prepare", "omniglot", "--source", str(fewshot_data / "omniglot"), "--root", str(root),
             "--quiet"])
    assert rc == 0, out.getvalue()
    return root, out.getvalue()


@pytest.fixture(scope="session")
def omniglot_root(omniglot_prepared: tuple[Path, str]) -> Path:
    """A temp data root holding a real 28x28 Omniglot store (``<root>/omniglot/omniglot-28.h5``),
    built once."""
    return omniglot_prepared[0]


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
def one_thread():
    """One torch thread for the test: small nets gain nothing from intra-op threads and lose a lot
    when the cores are shared, and published numbers were measured with one (summation order is per
    thread count)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def small_net():
    """A randomly initialized CoordinateLSTM (seeded), float64 for exact comparisons."""
    import torch

    from fewshot.l2o import CoordinateLSTM, LSTMOptimizerConfig

    torch.manual_seed(0)
    return CoordinateLSTM(LSTMOptimizerConfig(hidden=8)).double()

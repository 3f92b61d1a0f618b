"""Shared test fixtures: the real-data folder and a real Omniglot store built once per session.

Tests that need real data FAIL (never skip) when ``$FEWSHOT_DATA`` is unset or incomplete.
Usage (in a test): ``def test_x(omniglot_root): split = load_split("omniglot", "train", omniglot_root)``.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

_HOW = (
    "set FEWSHOT_DATA to the folder holding the raw data sets (omniglot/images_background.zip, "
    "omniglot/images_evaluation.zip, omniglot/splits/vinyals/*.txt, mnist/, fashion-mnist/, "
    "mini-imagenet/splits/ravi/*.csv), "
    "e.g. `export FEWSHOT_DATA=$(pwd)/../shared/data` (see /work/shared/data/README.md)"
)
_REQUIRED = (
    "omniglot/images_background.zip",
    "omniglot/images_evaluation.zip",
    "omniglot/splits/vinyals/train.txt",
    "mnist/train-images-idx3-ubyte.gz",
    "fashion-mnist/train-images-idx3-ubyte.gz",
    "mini-imagenet/splits/ravi/train.csv",
)


@pytest.fixture(scope="session")
def fewshot_data() -> Path:
    """``Path($FEWSHOT_DATA)``, the read-only folder of raw data sets; fails the test if it is missing."""
    env = os.environ.get("FEWSHOT_DATA", "")
    if not env:
        pytest.fail(f"FEWSHOT_DATA is not set: {_HOW}", pytrace=False)
    root = Path(env).expanduser().resolve()
    missing = [r for r in _REQUIRED if not (root / r).is_file()]
    if missing:
        pytest.fail(f"FEWSHOT_DATA={root} lacks {', '.join(missing)}: {_HOW}", pytrace=False)
    return root


@pytest.fixture(scope="session")
def omniglot_prepared(fewshot_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``(root, stdout)``: the one real 28x28 Omniglot store of the session, built by
    ``fewshot prepare omniglot --source $FEWSHOT_DATA/omniglot --root <temp>`` (the command's output kept
    for the test of that command). Tests read it and never rebuild it."""
    from fewshot.cli import main

    root = tmp_path_factory.mktemp("fewshot-data")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["prepare", "omniglot", "--source", str(fewshot_data / "omniglot"), "--root", str(root), "--quiet"])
    assert rc == 0, out.getvalue()
    return root, out.getvalue()


@pytest.fixture(scope="session")
def omniglot_root(omniglot_prepared: tuple[Path, str]) -> Path:
    """A temp data root holding a real 28x28 Omniglot store (``<root>/omniglot/omniglot-28.h5``), built once."""
    return omniglot_prepared[0]

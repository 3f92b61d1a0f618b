"""The learn2learn test oracle (never a runtime dependency; built by
bench/install_learn2learn.sh)."""
from __future__ import annotations

import os

import pytest

_HOW = ("build it with `bash bench/install_learn2learn.sh` "
        "(learn2learn 0.2.0 does not install from PyPI on Python >= 3.11)")


@pytest.fixture(scope="session")
def learn2learn():
    """The ``learn2learn`` module; skips with one reason when it is missing, fails instead when
    ``FEWSHOT_REQUIRE_DATA=1`` (as in CI), so CI never silently drops the oracle tests."""
    try:
        import learn2learn as l2l
    except ImportError:
        if os.environ.get("FEWSHOT_REQUIRE_DATA") == "1":
            pytest.fail(f"learn2learn (test oracle) is not installed: {_HOW}", pytrace=False)
        pytest.skip(f"learn2learn (test oracle) is not installed: {_HOW}")
    return l2l

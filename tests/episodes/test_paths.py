"""Data-root resolution and store layout."""
from pathlib import Path

import pytest

from episodes.paths import data_root, dataset_dir, is_url, store_path


def test_root_argument_wins_over_env(monkeypatch, tmp_path):
    monkeypatch.setenv("FEWSHOT_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root(str(tmp_path / "arg")) == tmp_path / "arg"


def test_env_then_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FEWSHOT_DATA", str(tmp_path / "env"))
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("FEWSHOT_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root(None) == tmp_path / "home" / ".cache" / "fewshot"
    monkeypatch.setenv("FEWSHOT_DATA", "")  # empty counts as unset
    assert data_root(None) == tmp_path / "home" / ".cache" / "fewshot"


def test_store_layout(tmp_path):
    assert dataset_dir("mnist", tmp_path) == tmp_path / "mnist"
    assert store_path("omniglot", tmp_path) == tmp_path / "omniglot" / "omniglot-28.h5"
    assert store_path("fashion-mnist", tmp_path,
                      14) == tmp_path / "fashion-mnist" / "fashion-mnist-14.h5"


def test_is_url():
    assert is_url("https://example.org/x/") and is_url("http://h:1/") and is_url("file:///tmp/x")
    assert not is_url("/tmp/x") and not is_url(Path("/tmp/x")) and not is_url(None) and not is_url(
        "data/http")


def test_read_only_root_is_refused_even_for_root(tmp_path):
    """A folder with no write bits (like a read-only raw-data copy) is never written into."""
    import numpy as np

    from episodes.download import download
    from episodes.errors import DataError
    from episodes.paths import ensure_writable_dir
    from episodes.store import StoreWriter

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(DataError, match="read-only"):
            ensure_writable_dir(ro / "omniglot")
        with pytest.raises(DataError, match="--root"):
            with StoreWriter(ro / "omniglot" / "omniglot-28.h5") as w:
                w.add_part("all", np.zeros((1, 1, 2, 2), np.uint8), [0, 1], ["a"])
        with pytest.raises(DataError, match="read-only"):
            download("http://127.0.0.1:9/never", ro / "x.gz", md5=None, quiet=True)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)
    assert ensure_writable_dir(tmp_path / "rw" / "sub").is_dir()

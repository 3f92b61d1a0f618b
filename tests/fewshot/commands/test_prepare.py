"""``fewshot prepare`` end to end, in-process through ``fewshot.cli.main``."""
import os

import pytest

from episodes import load_split
from episodes.mini_imagenet import FORMATS
from fewshot.cli import main


def test_prepare_mnist_then_noop_then_force(fewshot_data, tmp_path, capsys):
    argv = ["prepare", "mnist", "--source", str(fewshot_data / "mnist"), "--root", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr()
    store = tmp_path / "mnist" / "mnist-28.h5"
    assert f"wrote {store} in " in out.out and out.err == ""
    assert load_split("mnist", "train", tmp_path).data.shape == (60000, 1, 28, 28)
    os.utime(store, (0, 0))
    assert main(argv) == 0  # exists: a no-op
    assert "already exists" in capsys.readouterr().out and store.stat().st_mtime == 0
    assert main(argv + ["--force"]) == 0
    assert "wrote" in capsys.readouterr().out and store.stat().st_mtime > 0


@pytest.mark.slow
def test_prepare_fashion_mnist_with_size(fewshot_data, tmp_path, capsys):
    argv = ["prepare", "fashion-mnist", "--source", str(fewshot_data / "fashion-mnist"), "--root", str(tmp_path),
            "--size", "16", "--quiet"]
    assert main(argv) == 0
    assert load_split("fashion-mnist", "test", tmp_path, size=16).data.shape == (10000, 1, 16, 16)


def _one_error_line(capsys, text):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and text in err, err


def test_bad_input_is_one_line_and_exit_2(fewshot_data, tmp_path, capsys):
    assert main(["prepare", "omniglott", "--root", str(tmp_path)]) == 2
    _one_error_line(capsys, "unknown dataset 'omniglott': choose one of omniglot, mnist, fashion-mnist, mini-imagenet")
    assert main(["prepare", "omniglot", "--source", str(tmp_path / "missing"), "--root", str(tmp_path)]) == 2
    _one_error_line(capsys, "is not a folder")
    # The MNIST folder is no Omniglot source.
    assert main(["prepare", "omniglot", "--source", str(fewshot_data / "mnist"), "--root", str(tmp_path),
                 "--quiet"]) == 2
    _one_error_line(capsys, "not found")
    assert main(["prepare", "mnist", "--source", str(fewshot_data / "mnist"), "--root", str(tmp_path), "--size",
                 "0"]) == 2
    _one_error_line(capsys, "image size must be an integer")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_prepare_omniglot(omniglot_prepared, fewshot_data, capsys):
    """The session's Omniglot store was built by this command (tests/conftest.py); a rerun is a no-op."""
    root, out = omniglot_prepared
    store = root / "omniglot" / "omniglot-28.h5"
    assert f"wrote {store}" in out
    assert load_split("omniglot", "trainval", root).num_classes == 4800
    mtime = store.stat().st_mtime_ns
    argv = ["prepare", "omniglot", "--source", str(fewshot_data / "omniglot"), "--root", str(root), "--quiet"]
    assert main(argv) == 0
    assert "already exists" in capsys.readouterr().out and store.stat().st_mtime_ns == mtime


def test_prepare_mini_imagenet_detects_the_format(tmp_path, capsys, monkeypatch):
    import episodes.mini_imagenet.build as build
    from tests.episodes.mini_imagenet.fixtures import COUNTS, make_fixture, write_cache_pickles

    fx = make_fixture(0)
    src = write_cache_pickles(tmp_path / "l2l", fx)
    argv = ["prepare", "mini-imagenet", "--source", str(src), "--root", str(tmp_path / "root"), "--workers", "1"]
    # The CLI is strict: the fixture's 3/2/2 classes x 5 are not the Ravi split.
    assert main(argv + ["--quiet"]) == 2
    _one_error_line(capsys, "split train lacks class n01749939 in the Ravi train split")
    # With the official split shrunk to the fixture's classes, the same strict path succeeds.
    monkeypatch.setattr(build, "RAVI_CLASSES", {s: tuple(sorted(c)) for s, c in fx.images.items()})
    monkeypatch.setattr(build, "EXPECTED_COUNTS", COUNTS)
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    store = tmp_path / "root" / "mini-imagenet" / "mini-imagenet-84.h5"
    assert out[0] == f"mini-imagenet: detected cache-pickle ({FORMATS['cache-pickle']}) in {src}"
    assert out[1].startswith(f"mini-imagenet: wrote {store} from cache-pickle source {src} in ")
    assert load_split("mini-imagenet", "val", tmp_path / "root").data.shape == (10, 3, 84, 84)


def test_mini_imagenet_only_options_and_unknown_sources(tmp_path, capsys):
    assert main(["prepare", "mnist", "--workers", "2", "--root", str(tmp_path)]) == 2
    _one_error_line(capsys, "--workers only applies to mini-imagenet: drop it for mnist")
    (tmp_path / "junk").mkdir()
    assert main(["prepare", "mini-imagenet", "--source", str(tmp_path / "junk"), "--root", str(tmp_path)]) == 2
    _one_error_line(capsys, "holds no known mini-ImageNet format; bring one of - ravi-csv: images/")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []

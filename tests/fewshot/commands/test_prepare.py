"""``fewshot prepare`` end to end, in-process through ``fewshot.cli.main``."""
import os

import pytest

from episodes import load_split
from episodes.mini_imagenet import FORMATS
from fewshot.cli import main


def test_prepare_mnist_then_noop_then_force(fewshot_data, tmp_path, capsys):
    argv = ["prepare", "mnist", "--source", str(fewshot_data / "mnist"), "--root", str(tmp_path),
            "--quiet"]
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
    argv = ["prepare", "fashion-mnist", "--source", str(fewshot_data / "fashion-mnist"), "--root",
            str(tmp_path),
            "--size", "16", "--quiet"]
    assert main(argv) == 0
    assert load_split("fashion-mnist", "test", tmp_path, size=16).data.shape == (10000, 1, 16, 16)


def _one_error_line(capsys, text):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and text in err, err


def test_bad_input_is_one_line_and_exit_2(fewshot_data, tmp_path, capsys):
    assert main(["prepare", "omniglott", "--root", str(tmp_path)]) == 2
    _one_error_line(capsys,
                    "unknown dataset 'omniglott': choose one of omniglot, mnist, fashion-mnist, "
                    "mini-imagenet")
    assert main(
        ["prepare", "omniglot", "--source", str(tmp_path / "missing"), "--root",
         str(tmp_path)]) == 2
    _one_error_line(capsys, "is not a folder")
    # The MNIST folder is no Omniglot source.
    assert main(
        ["prepare", "omniglot", "--source", str(fewshot_data / "mnist"), "--root", str(tmp_path),
                 "--quiet"]) == 2
    _one_error_line(capsys, "not found")
    assert main(
        ["prepare", "mnist", "--source", str(fewshot_data / "mnist"), "--root", str(tmp_path),
         "--size",
                 "0"]) == 2
    _one_error_line(capsys, "image size must be an integer")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_prepare_omniglot(omniglot_prepared, fewshot_data, capsys):
    """The session's Omniglot store was built by this command (tests/conftest.py); a rerun is a
    no-op."""
    root, out = omniglot_prepared
    store = root / "omniglot" / "omniglot-28.h5"
    assert f"wrote {store}" in out
    assert load_split("omniglot", "trainval", root).num_classes == 4800
    mtime = store.stat().st_mtime_ns
    argv = ["prepare", "omniglot", "--source", str(fewshot_data / "omniglot"), "--root", str(root),
            "--quiet"]
    assert main(argv) == 0
    assert "already exists" in capsys.readouterr().out and store.stat().st_mtime_ns == mtime


def test_prepare_mini_imagenet_detects_the_format(tmp_path, capsys, monkeypatch):
    import episodes.mini_imagenet.build as build
    from tests.episodes.mini_imagenet.fixtures import COUNTS, make_fixture, write_cache_pickles

    fx = make_fixture(0)
    src = write_cache_pickles(tmp_path / "l2l", fx)
    argv = ["prepare", "mini-imagenet", "--source", str(src), "--root", str(tmp_path / "root"),
            "--workers", "1"]
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
    assert main(
        ["prepare", "mini-imagenet", "--source", str(tmp_path / "junk"), "--root",
         str(tmp_path)]) == 2
    _one_error_line(capsys, "holds no known mini-ImageNet format; bring one of - ravi-csv: images/")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ----------------------------------------------------------------------------- issue 14
def _good_store(path):
    """A small valid store standing in for a good, earlier prepared one."""
    import numpy as np

    from episodes.store import StoreWriter

    with StoreWriter(path, dataset="stand-in") as w:
        w.add_part("background", np.zeros((2, 1, 4, 4), dtype=np.uint8), [0, 1, 2], ["a", "b"])
    return path.read_bytes()


def _omniglot_source(tmp_path, fewshot_data, background: bytes):
    src = tmp_path / "src"
    (src / "splits").mkdir(parents=True)
    os.symlink(fewshot_data / "omniglot" / "splits" / "vinyals", src / "splits" / "vinyals")
    os.symlink(fewshot_data / "omniglot" / "images_evaluation.zip", src / "images_evaluation.zip")
    (src / "images_background.zip").write_bytes(background)
    return src


def _encrypted_archive(fewshot_data):
    from tests.episodes.image_fixtures import patch_zip_member
    from tests.episodes.test_omniglot import _tiny_background_zip

    blob, member = _tiny_background_zip()
    return patch_zip_member(blob, member, encrypted=True), "is encrypted (password-protected)"


def _unsupported_archive(fewshot_data):
    from tests.episodes.image_fixtures import patch_zip_member
    from tests.episodes.test_omniglot import _tiny_background_zip

    blob, member = _tiny_background_zip()
    return patch_zip_member(blob, member, method=9), "uses zip compression method 9 (deflate64)"


def _bomb_archive(fewshot_data):
    from tests.episodes.image_fixtures import bomb_png
    from tests.episodes.test_omniglot import _rewrite_zip

    real = fewshot_data / "omniglot" / "images_background.zip"
    victim = "images_background/Alphabet_of_the_Magi/character01/0709_01.png"
    blob = _rewrite_zip(real, data=lambda n, b: bomb_png(30000, 30000) if n == victim else b)
    return blob, ("'Alphabet_of_the_Magi/character01/0709_01.png' is a decompression bomb "
                  "(900,000,000 pixels")


@pytest.mark.parametrize("make", [_encrypted_archive, _unsupported_archive, _bomb_archive])
def test_force_over_a_good_store_with_a_bad_archive_keeps_the_store(fewshot_data, tmp_path, capsys,
                                                                    make):
    blob, text = make(fewshot_data)
    src = _omniglot_source(tmp_path, fewshot_data, blob)
    store = tmp_path / "root" / "omniglot" / "omniglot-28.h5"
    before = _good_store(store)
    argv = ["prepare", "omniglot", "--source", str(src), "--root", str(tmp_path / "root"),
            "--force", "--quiet"]
    assert main(argv) == 2
    _one_error_line(capsys, text)
    assert store.read_bytes() == before
    assert sorted(p.name for p in store.parent.iterdir()) == [store.name]  # no temp file left


def test_disk_full_during_prepare_is_one_line_and_keeps_the_store(fewshot_data, tmp_path, capsys,
                                                                  monkeypatch):
    import errno

    import h5py

    store = tmp_path / "mnist" / "mnist-28.h5"
    before = _good_store(store)
    real = h5py.Group.create_dataset

    def full(self, name, *args, **kwargs):
        if name == "images" and self.name == "/test":  # the second part: the first one was written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", full)
    argv = ["prepare", "mnist", "--source", str(fewshot_data / "mnist"), "--root", str(tmp_path),
            "--force", "--quiet"]
    assert main(argv) == 2
    _one_error_line(capsys,
                    f"error: cannot write store {store}: no space left on the device (the store "
                    "needs at "
                    f"least 54.9 MB); free space in {store.parent} or pass --root on a "
                    "disk with room")
    assert store.read_bytes() == before
    assert sorted(p.name for p in store.parent.iterdir()) == [store.name]


def test_next_prepare_removes_temp_files_of_a_killed_one(fewshot_data, tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    # what a SIGKILLed prepare leaves (15 MB in the issue)
    killed = folder / ".mnist-28.h5.k1ll3d_x.tmp"
    killed.write_bytes(b"\0" * 1000)
    unrelated = folder / "notes.tmp"
    unrelated.write_bytes(b"mine")
    os.utime(killed, (1, 1))
    os.utime(unrelated, (1, 1))
    argv = ["prepare", "mnist", "--source", str(fewshot_data / "mnist"), "--root", str(tmp_path),
            "--quiet"]
    assert main(argv) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["mnist-28.h5", "notes.tmp"]


def test_sigkilled_prepare_leaves_a_temp_file_that_the_next_prepare_removes(fewshot_data, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "fewshot.cli", "prepare", "mnist", "--source",
           str(fewshot_data / "mnist"),
           "--root", str(tmp_path), "--quiet"]
    folder = tmp_path / "mnist"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if folder.is_dir() and any(p.name.endswith(".tmp") for p in folder.iterdir()):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "prepare finished before it could be killed"
    left = sorted(p.name for p in folder.iterdir())
    # no store: half-written
    assert len(left) == 1 and left[0].startswith(".mnist-28.h5.") and left[0].endswith(".tmp")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["mnist-28.h5"]


def test_a_failed_download_leaves_no_empty_dataset_folder(tmp_path, capsys):
    """Issue 23: a failed download left an empty ``<root>/omniglot/`` (and the root it had
    created)."""
    empty = tmp_path / "mirror"
    empty.mkdir()
    root = tmp_path / "new" / "data"
    assert main(
        ["prepare", "omniglot", "--source", empty.as_uri() + "/", "--root", str(root),
         "--quiet"]) == 2
    _one_error_line(capsys, "images_background.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror"]  # nothing it created is left
    (tmp_path / "kept").mkdir()  # a folder that existed before is kept, even when empty
    assert main(
        ["prepare", "mnist", "--source", empty.as_uri() + "/", "--root", str(tmp_path / "kept"),
                 "--quiet"]) == 2
    capsys.readouterr()
    assert (tmp_path / "kept").is_dir() and list((tmp_path / "kept").iterdir()) == []

"""One training per run directory: the lock names the holder, dies with it (SIGKILL), and the next
run cleans the temp files of killed writes (only our own names)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fewshot.config import apply_overrides, get_preset
from fewshot.errors import ConfigError
from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.loop import train
from fewshot.training.run_folder import RunLock, remove_run_temps

HOLD = ("import sys, time; from fewshot.training.run_folder import RunLock; "
        "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)")


def _cfg(*items):
    return apply_overrides(get_preset("sinusoid-maml"),
                           ["device=cpu", "val_every=0", "optim.lr=0.01", *items])


def test_second_run_is_refused_until_the_holder_is_killed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              env=env, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError) as info:
            train(_cfg("iterations=2"), out, quiet=True, tensorboard=False)
        assert str(info.value) == (
            f"{out} is in use by another training run (process {holder.pid} holds "
            f"{out / '.run.lock'}): wait for it to finish or stop it, or "
            "choose another --out")
        assert sorted(p.name for p in out.iterdir()) == [".run.lock"]  # nothing else written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # the kernel dropped the lock with the killed process: the next run proceeds
    train(_cfg("iterations=2", "checkpoint_every=1"), out, quiet=True, tensorboard=False)
    assert load_checkpoint(out / "last.pt")["iteration"] == 2


def test_lock_is_released_on_an_error_and_reentrant_runs_proceed(tmp_path):
    out = tmp_path / "run"
    train(_cfg("iterations=2"), out, quiet=True, tensorboard=False)
    with pytest.raises(ConfigError, match="another config"):  # an error while holding the lock
        train(_cfg("iterations=2", "meta_batch=3"), out, quiet=True, tensorboard=False)
    with RunLock(out):  # released: free to take again
        with pytest.raises(ConfigError, match="is in use by another training run"):
            RunLock(out).acquire()  # a second open file description conflicts, even in one process


KILLED = [".last.pt.a1b2c3d4.tmp", ".best.pt.zz_9abcd.tmp", ".metrics.jsonl.0a1b2c3d.tmp",
          ".config.yaml.abcdefgh.tmp", ".last.pt.tmp-k3j4h5g6", ".write-probe-1a2b3c4d"]
OTHERS = [".last.pt.a1b2c3d4.tmp.keep", ".notes.txt.a1b2c3d4.tmp", "last.pt.a1b2c3d4.tmp",
          ".last.pt.abc.tmp",
          "notes.txt"]


def test_next_run_removes_temp_files_of_killed_writes_only(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    old = time.time() - 60
    for name in KILLED + OTHERS:
        (out / name).write_bytes(b"partial")
        os.utime(out / name, (old, old))
    (out / "real.txt").write_text("x")
    # a link is never followed or removed
    (out / ".best.pt.linklink.tmp").symlink_to(out / "real.txt")
    (out / ".last.pt.dirdirdi.tmp").mkdir()
    train(_cfg("iterations=2"), out, quiet=True, tensorboard=False)
    names = {p.name for p in out.iterdir()}
    assert not names & set(KILLED)
    assert set(OTHERS) | {".best.pt.linklink.tmp", ".last.pt.dirdirdi.tmp", "real.txt"} <= names


def test_temp_files_newer_than_the_lock_are_kept(tmp_path):
    (tmp_path / ".last.pt.a1b2c3d4.tmp").write_bytes(b"x")
    assert remove_run_temps(tmp_path, before=time.time() - 60) == []
    assert remove_run_temps(tmp_path,
                            before=time.time() + 1) == [tmp_path / ".last.pt.a1b2c3d4.tmp"]


def test_the_lock_file_goes_with_its_run_and_a_run_racing_its_removal_locks_the_new_one(tmp_path,
                                                                                        monkeypatch):
    import fewshot.training.run_folder as run_folder

    out = tmp_path / "run"
    train(_cfg("iterations=2"), out, quiet=True, tensorboard=False)
    assert not (out / ".run.lock").exists()  # removed when the run ended
    first = RunLock(out).acquire()
    real_open, opened = os.open, []

    def open_then_first_releases(path, flags, mode=0o777):
        fd = real_open(path, flags, mode)
        # the second run opened the file; the first now ends and removes it, before the flock
        if not opened:
            opened.append(fd)
            first.release()
        return fd

    monkeypatch.setattr(run_folder.os, "open", open_then_first_releases)
    second = RunLock(out).acquire()  # locked the removed file, saw it gone, and locked the new one
    monkeypatch.undo()
    try:
        assert (out / ".run.lock").exists() and len(opened) == 1
        with pytest.raises(ConfigError, match="is in use by another training run"):
            RunLock(out).acquire()  # a third run sees the second's lock: nobody shares the folder
    finally:
        second.release()

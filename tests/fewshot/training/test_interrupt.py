"""SIGINT and SIGTERM save the run at the iteration reached, name the resume command, exit 130 /
143, and the resumed run ends bit-identical to an uninterrupted one (one process and ``--nproc
2``)."""
from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time

import pytest

from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.interrupt import ABORT_AFTER_S, StopSignals
from fewshot.training.metrics_log import read_metrics

from .test_resume import _assert_same_tree, _env

ITERATIONS = 400
# no periodic checkpoint before the end: the one last.pt mid-run is the interrupt's
ARGS = ["train", "sinusoid-maml", "--iterations", str(ITERATIONS), "--quiet", "--device", "cpu",
        "--set", "checkpoint_every=1000", "--set", "val_every=100", "--set", "val_episodes=20",
        "--set", "optim.lr=0.01", "--set", "meta_batch=24"]


def _cmd(out, *extra: str):
    return [sys.executable, "-m", "fewshot", *ARGS, "--out", str(out), *extra]


def _interrupt(cmd, out, signum, env, send_to_group=False):
    """Start ``cmd``, send ``signum`` once its log shows iteration 30, return the finished
    process."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=send_to_group)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            log = out / "metrics.jsonl"
            if log.exists() and any(r.get("iteration", 0) >= 30
                                    for r in read_metrics(log, strict=False)):
                proc.send_signal(signum)
                break
            time.sleep(0.02)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def _check_resumed_equals_full(full, stopped, status, err, signum, env):
    assert status == 128 + signum, err
    line = [x for x in err.splitlines() if x.startswith("interrupted by")]
    assert len(line) == 1, err
    at = load_checkpoint(stopped / "last.pt")["iteration"]
    assert 30 <= at < ITERATIONS
    name = signal.Signals(signum).name
    assert line[0].startswith(
        f"interrupted by {name} at iteration {at}: saved {stopped / 'last.pt'}; resume with: "
        "fewshot train sinusoid-maml")
    resume = shlex.split(line[0].split("resume with: ", 1)[1])
    done = subprocess.run([sys.executable, "-m", *resume], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(stopped / "last.pt")
    assert a["iteration"] == b["iteration"] == ITERATIONS
    for key in ("learner", "optimizer", "scheduler", "sources", "rng", "extra"):
        _assert_same_tree(a[key], b[key], key)
    assert read_metrics(full / "metrics.jsonl") == read_metrics(stopped / "metrics.jsonl")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_the_run_and_the_resumed_run_is_bit_identical(tmp_path, signum):
    env = _env(tmp_path)
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    subprocess.run(_cmd(full), env=env, check=True, capture_output=True, timeout=300)
    status, err = _interrupt(_cmd(stopped), stopped, signum, env)
    _check_resumed_equals_full(full, stopped, status, err, signum, env)


@pytest.mark.slow
def test_sigterm_to_the_nproc_launcher_saves_every_rank_agreeing(tmp_path):
    env = _env(tmp_path)
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    subprocess.run(_cmd(full, "--nproc", "2"), env=env, check=True, capture_output=True,
                   timeout=300)
    status, err = _interrupt(_cmd(stopped, "--nproc", "2"), stopped, signal.SIGTERM, env)
    _check_resumed_equals_full(full, stopped, status, err, signal.SIGTERM, env)
    assert "--nproc=2" in err


def test_stop_signals_flag_once_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGINT)
    with StopSignals(announce=False) as stop:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # the same request arriving twice, at once: not an abort
        assert stop.signum == signal.SIGINT
        stop._first_at -= ABORT_AFTER_S + 1  # a second signal later than that aborts without saving
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is before

"""Exact resume: a CPU run SIGKILLed mid-way and resumed ends bit-identical to an uninterrupted
run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.metrics_log import read_metrics

ITERATIONS = 600  # long enough that the poll below always kills it mid-run, even on a fast machine
ARGS = ["train", "sinusoid-maml", "--iterations", str(ITERATIONS), "--quiet", "--device", "cpu",
        "--set", "checkpoint_every=10", "--set", "val_every=50", "--set", "val_episodes=20",
        "--set", "optim.lr=0.01"]


def _env(tmp_path):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", FEWSHOT_DATA=str(tmp_path / "no-data"))
    return env


def _cmd(out, *extra: str):
    return [sys.executable, "-m", "fewshot.cli", *ARGS, "--out", str(out), *extra]


def _assert_same_tree(a, b, where):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, precision):
    env = _env(tmp_path)
    full, killed = tmp_path / "full", tmp_path / "killed"
    extra = ("--precision", precision)
    subprocess.run(_cmd(full, *extra), env=env, check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(_cmd(killed, *extra), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt_path, killed_at = killed / "last.pt", None
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if ckpt_path.exists():
                it = load_checkpoint(ckpt_path)["iteration"]  # atomic writes: always a whole file
                if it >= 20:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = load_checkpoint(ckpt_path)["iteration"]
    assert 20 <= killed_at < ITERATIONS

    resumed = subprocess.run(_cmd(killed, *extra), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from iteration {killed_at}" in resumed.stdout

    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["iteration"] == b["iteration"] == ITERATIONS
    for key in ("learner", "optimizer", "scheduler", "sources", "rng", "extra"):
        _assert_same_tree(a[key], b[key], key)
    _assert_same_tree(load_checkpoint(full / "best.pt")["learner"],
                      load_checkpoint(killed / "best.pt")["learner"],
                      "best")
    # the clock is not training state: the resumed run reports both of its sessions and their sum
    one, two = a["clock"], b["clock"]
    assert [(s["from_iteration"], s["to_iteration"]) for s in one["sessions"]] == [(0, ITERATIONS)]
    assert [(s["from_iteration"], s["to_iteration"]) for s in two["sessions"]] == [(0, killed_at),
                                                                                   (killed_at,
                                                                                    ITERATIONS)]
    assert two["cpu_seconds"] == pytest.approx(sum(s["cpu_seconds"] for s in two["sessions"]))
    assert two["wall_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in two["sessions"]))
    assert all(s["cpu_seconds"] > 0 and s["wall_seconds"] > 0 for s in two["sessions"])
    # the metrics log of the resumed run equals the uninterrupted one line for line
    assert read_metrics(full / "metrics.jsonl") == read_metrics(killed / "metrics.jsonl")

"""``fewshot train --nproc N|auto``: the processes started by torch.distributed's launcher train
exactly as a torchrun job does; the number of processes and threads ``auto`` picks; bad values are
one clear error."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fewshot.cli import main
from fewshot.config import apply_overrides, load_config
from fewshot.errors import ConfigError
from fewshot.runtime import launch
from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.metrics_log import read_metrics
from tests.fewshot.runtime.test_distributed import (
    _assert_same_training,
    _env,
    _overrides,
    _torchrun,
)

CPU = torch.device("cpu")


@pytest.mark.slow
def test_nproc_2_trains_what_torchrun_trains(omniglot_root, tmp_path):
    preset, sets = "omniglot-5w1s-maml", [f"--set={o}" for o in _overrides(omniglot_root)]
    by_torchrun = tmp_path / "torchrun"
    proc = _torchrun(
        ["-m", "fewshot", "train", preset, "--out", str(by_torchrun), "--quiet", *sets],
        cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    by_nproc = tmp_path / "nproc"
    env = _env()
    env.pop("OMP_NUM_THREADS")  # so the launcher shares the cores out
    proc = subprocess.run(
        [sys.executable, "-m", "fewshot", "train", preset, "--out", str(by_nproc), "--quiet",
                           "--nproc", "2", *sets], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 3 iterations") == 1  # rank 0 alone prints

    got, want = load_checkpoint(by_nproc / "last.pt"), load_checkpoint(by_torchrun / "last.pt")
    session = got["clock"]["sessions"][-1]
    assert session["processes"] == 2 and session["threads"] == launch.threads_per_process(2)
    cfg = apply_overrides(load_config(preset), _overrides(omniglot_root))
    if session["threads"] == 1:  # the same processes, threads and data: the same bits
        assert all(torch.equal(got["learner"][k], want["learner"][k]) for k in want["learner"])
    _assert_same_training(got["learner"], want["learner"], cfg, 3)
    a, b = read_metrics(by_nproc / "metrics.jsonl"), read_metrics(by_torchrun / "metrics.jsonl")
    assert [(r["kind"], r["iteration"]) for r in a] == [(r["kind"], r["iteration"]) for r in b]
    for x, y in zip(a, b):
        for name in ("loss", "accuracy", "ci95", "episodes"):
            if name in y:
                assert x[name] == pytest.approx(y[name], rel=1e-5, abs=1e-6), (x, y)


@pytest.mark.parametrize("value, message", [
    ("0", "error: --nproc must be a number of processes >= 1 or auto, got '0'"),
    ("two", "error: --nproc must be a number of processes >= 1 or auto, got 'two'"),
    ("3",
     "error: meta_batch=32 does not split evenly over 3 processes: use a meta_batch divisible by "
     "3"),
])
def test_bad_nproc_is_one_clear_error(value, message, tmp_path, capsys):
    rc = main(
        ["train", "omniglot-5w1s-maml", "--out", str(tmp_path / "run"), "--nproc", value,
         "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith(message) and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing started, nothing written


def test_nproc_under_torchrun_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    rc = main(["train", "omniglot-5w1s-maml", "--out", str(tmp_path / "run"), "--nproc", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and err == (
        "error: --nproc starts its own processes: leave it out under torchrun (whose "
        "--nproc_per_node sets the number of processes)\n")


@pytest.mark.parametrize("meta_batch, cores, processes, threads", [
    (32, 1, 1, 1), (32, 2, 2, 1), (32, 16, 16, 1), (32, 24, 16, 1), (32, 64, 32, 2), (25, 2, 1, 2),
    (24, 16, 12, 1),
])
def test_auto_is_one_process_per_core_dividing_the_meta_batch(meta_batch, cores, processes,
                                                              threads):
    n = launch.choose_nproc("auto", meta_batch, CPU, cores=cores)
    assert n == processes and meta_batch % n == 0
    assert launch.threads_per_process(n, cores=cores) == threads


def test_explicit_counts_are_kept_or_refused():
    # more processes than cores is the user's choice
    assert launch.choose_nproc("4", 32, CPU, cores=2) == 4
    assert launch.choose_nproc(" Auto ", 8, CPU, cores=3) == 2
    with pytest.raises(ConfigError, match="does not split evenly over 5 processes"):
        launch.choose_nproc("5", 32, CPU, cores=8)
    with pytest.raises(ConfigError,
                       match=r"--nproc must be a number of processes >= 1 or auto, got '-1'"):
        launch.parse_nproc("-1")


def test_the_children_get_every_option_but_nproc():
    from fewshot.cli import build_parser
    args = build_parser().parse_args(
        ["train", "cfg.yaml", "--out", "runs/x", "--set", "a=1", "--set=b=2", "--seed",
                                      "3", "--resume", "--quiet", "--nproc", "auto",
                                      "--dist-timeout", "60"])
    from fewshot.commands.train import _child_argv
    assert _child_argv(args) == ["train", "cfg.yaml", "--out=runs/x", "--set=a=1", "--set=b=2",
                                 "--seed=3",
                                 "--resume", "--quiet", "--dist-timeout=60.0"]
    reparsed = build_parser().parse_args(_child_argv(args))
    assert {k: v for k, v in vars(reparsed).items() if k not in ("nproc", "func", "parser")} == \
        {k: v for k, v in vars(args).items() if k not in ("nproc", "func", "parser")}


@pytest.mark.parametrize("meta_batch, environ, threads, device, want", [
    (32, {}, None, "cpu", launch.Layout(2, 1)),  # one process per core, one thread each
    (25, {}, None, "cpu", launch.Layout(1, 1)),  # sinusoid: 25 does not split over 2 cores
    (None, {}, None, "cpu", launch.Layout(1, 1)),  # evaluation
    # the user's threads: torch reads them
    (32, {"OMP_NUM_THREADS": "3"}, None, "cpu", launch.Layout(1, None)),
    (32, {}, 2, "cpu", launch.Layout(1, 2)),  # --threads 2
    (32, {"OMP_NUM_THREADS": "zero"}, None, "cpu", launch.Layout(2, 1)),  # not a count: ignored
    (32, {}, None, "meta", launch.Layout(1, None)),  # off the CPU: one process
])
def test_the_default_layout(meta_batch, environ, threads, device, want):
    got = launch.default_layout(meta_batch, torch.device(device), threads=threads, environ=environ,
                                cores=2)
    assert got == want


def test_torch_threads_are_set_inside_and_restored():
    before = torch.get_num_threads()
    with launch.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with launch.torch_threads(None):
        assert torch.get_num_threads() == before


def test_train_and_eval_use_the_default_layout_unless_told(tmp_path, monkeypatch, capsys):
    import fewshot.commands.eval as eval_command
    import fewshot.commands.train as train_command

    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(launch, "cpu_cores", lambda: 2)
    seen = []
    monkeypatch.setattr(train_command, "train", lambda *a,
                        **k: seen.append(torch.get_num_threads()) or 0 / 0)
    # stopped inside training: the threads it ran with are recorded
    with pytest.raises(ZeroDivisionError):
        main(["train", "sinusoid-maml", "--out", str(tmp_path / "s"), "--quiet", "--device", "cpu"])
    assert seen == [1]
    started = []
    monkeypatch.setattr(launch, "launch", lambda n, argv,
                        threads: started.append((n, threads, argv)))
    assert main(
        ["train", "omniglot-5w1s-maml", "--out", str(tmp_path / "o"), "--device", "cpu"]) == 0
    assert capsys.readouterr().out == "starting 2 processes, 1 torch thread each\n"
    assert started[0][:2] == (2, 1) and not any(a.startswith("--nproc") for a in started[0][2])
    # --threads: one process with that many threads, no launcher
    with pytest.raises(ZeroDivisionError):
        main(
            ["train", "omniglot-5w1s-maml", "--out", str(tmp_path / "o"), "--device", "cpu",
             "--threads", "2"])
    assert len(started) == 1 and seen == [1, 2]
    monkeypatch.setattr(eval_command, "_run", lambda *a: seen.append(torch.get_num_threads()) or 0)
    monkeypatch.setattr(eval_command, "resolve_target", lambda *a: (None, None, ""))
    assert main(["eval", "anything", "--device", "cpu"]) == 0
    assert main(["eval", "anything", "--device", "cpu", "--threads", "2"]) == 0
    assert seen[-2:] == [1, 2]

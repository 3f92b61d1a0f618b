"""Data-parallel training under torchrun (gloo, 2 CPU processes spawned by the test) against one
process.

The claim: with the same seed, 2 processes x meta-batch 4 give the meta-parameters (and batch-norm
statistics, and MT-net's noise generator) of 1 process x meta-batch 8 after K iterations, up to
floating-point summation order; every rank ends bit-identical; validation numbers match; a run
resumes under another process count; a failing rank ends the job.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import fewshot
from fewshot.config import apply_overrides, load_config
from fewshot.training import train
from fewshot.training.build import build_learner_from_config, build_train_source
from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.metrics_log import read_metrics

REPO = Path(fewshot.__file__).resolve().parents[1]
ITERATIONS = 3


def _overrides(root: Path, iterations: int = ITERATIONS, meta_batch: int = 8) -> list[str]:
    return [f"data.root={root}", "model.hidden=8", f"meta_batch={meta_batch}",
            f"iterations={iterations}",
            "val_every=3", "val_episodes=10", "eval_batch=4", "checkpoint_every=1", "log_every=1",
            "device=cpu"]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _torchrun(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _assert_same_training(got: dict, want: dict, cfg, iterations: int) -> None:
    """``got`` (a learner state_dict) equals ``want`` up to float summation order.

    A convolution's bias right before batch norm cannot change any loss (BN subtracts the batch
    mean): its meta-gradient is rounding noise, which Adam turns into steps of up to ±lr whatever
    the noise's size, so those biases (and the running means that record them) may differ by 2·lr
    per iteration.
    """
    dead = {f"model.features.{i}.bias" for i in (0, 3, 6, 9)} | {f"model.features.{i}.running_mean"
                                                                 for i in (1, 4, 7, 10)}
    # MT-net's T right before batch norm: BN cancels a positive scaling of each row (output
    # channel), so
    # along each row's own direction the meta-gradient is rounding noise too (Adam: up to ±lr a
    # step);
    # the rows' directions are what the loss sees, and those must agree
    scaled = {f"model.features.{i}.transform" for i in (0, 3, 6, 9)}
    init = build_learner_from_config(cfg).state_dict()
    moved = 0
    for key, w in want.items():
        g = got[key]
        if key in scaled and key in init:
            torch.testing.assert_close(g / g.norm(dim=1, keepdim=True),
                                       w / w.norm(dim=1, keepdim=True),
                                       rtol=1e-5, atol=1e-6, msg=key)
            torch.testing.assert_close(g, w, rtol=0, atol=2 * cfg.optim.lr * iterations, msg=key)
            moved += int(not torch.equal(w, init[key]))
        elif key in dead:
            torch.testing.assert_close(g, w, rtol=0, atol=2 * cfg.optim.lr * iterations, msg=key)
        elif w.is_floating_point():
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6, msg=key)
            moved += int(not torch.equal(w, init[key]))
        else:  # integer buffers (BN counters, the noise generator state) are exactly equal
            assert torch.equal(g, w), key
    assert moved > 0  # the comparison is not between two untrained models


# Each rank trains, then saves its own learner state, so the test can compare the ranks with each
# other.
DRIVER = textwrap.dedent('''
    import os, sys, torch
    from fewshot.config import apply_overrides, load_config
    from fewshot.training import train
    preset, out, *overrides = sys.argv[1:]
    result = train(apply_overrides(load_config(preset), overrides), out, quiet=True)
    torch.save(result.learner.state_dict(), os.path.join(out, f"rank{os.environ['RANK']}.state"))
''')


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("driver") / "driver.py"
    path.write_text(DRIVER)
    return path


@pytest.mark.parametrize("preset", ["omniglot-5w1s-maml", "omniglot-5w1s-mtnet"])
def test_two_processes_equal_one_with_the_whole_meta_batch(preset, omniglot_root, driver, tmp_path,
                                                           monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    two = tmp_path / "two"
    proc = _torchrun([str(driver), preset, str(two), *_overrides(omniglot_root)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = tmp_path / "one"
    cfg = apply_overrides(load_config(preset), _overrides(omniglot_root))
    single = train(cfg, one, quiet=True).learner.state_dict()

    ranks = [torch.load(two / f"rank{r}.state", weights_only=True) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys() == single.keys()
    for key in single:  # every rank ends bit-identical: parameters, BN statistics, noise generator
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    saved = load_checkpoint(two / "last.pt")["learner"]  # rank 0 wrote the checkpoint
    assert all(torch.equal(saved[k], ranks[0][k]) for k in saved)
    _assert_same_training(ranks[0], single, cfg, ITERATIONS)
    if preset.endswith("mtnet"):
        assert "noise_rng" in single and torch.equal(ranks[0]["noise_rng"], single["noise_rng"])

    logged_two, logged_one = read_metrics(two / "metrics.jsonl"), read_metrics(
        one / "metrics.jsonl")
    assert [r["iteration"] for r in logged_two] == [r["iteration"] for r in logged_one]
    for a, b in zip(logged_two, logged_one):
        assert a["kind"] == b["kind"]
        for name in ("loss", "accuracy"):
            if name in b:
                assert a[name] == pytest.approx(b[name], rel=1e-5, abs=1e-6), (a, b)
    val_two = [r for r in logged_two if r["kind"] == "val"]
    # the gathered validation covered every episode
    assert val_two and val_two[-1]["episodes"] == 10


# The meta-gradient itself, in float64: each rank back-propagates its half of a meta-batch of 8 and
# the
# gradients and BN statistics are averaged with fewshot.runtime.distributed; rank 0 saves them.
GRADIENTS = textwrap.dedent('''
    import sys, torch
    from episodes import ShardedSource
    from fewshot.runtime import distributed
    from fewshot.config import apply_overrides, load_config
    from fewshot.training.build import build_learner_from_config, build_train_source
    out, root = sys.argv[1:]
    ranks, _ = distributed.setup(torch.device("cpu"))
    result = {}
    for preset in ("omniglot-5w1s-maml", "omniglot-5w1s-mtnet"):
        cfg = apply_overrides(load_config(preset), [f"data.root={root}", "model.hidden=8"])
        learner = build_learner_from_config(cfg).double()
        learner.shard_tasks(ranks.rank, ranks.world)
        source = ShardedSource(build_train_source(cfg), ranks.rank, ranks.world)
        buffers = [b for b in learner.buffers() if b.is_floating_point()]
        before = [b.clone() for b in buffers]
        batch = source.sample(8)
        learner.meta_backward(batch.__class__(batch.support_x.double(), batch.support_y,
                                              batch.query_x.double(), batch.query_y, batch.ways))
        params = list(learner.parameters())
        distributed.average_gradients(params, ranks)
        distributed.average_buffers(buffers, before, ranks)
        grads = {f"grad.{n}": p.grad for n, p in learner.named_parameters()}
        result[preset] = {**grads, **learner.state_dict()}
    if ranks.main:
        torch.save(result, out)
    distributed.teardown(ranks)
    # as the fewshot command's ranks do: no interpreter finalization after gloo
    distributed.leave(0)
''')


def test_meta_gradient_of_two_halves_equals_the_whole_in_float64(omniglot_root, tmp_path):
    script = tmp_path / "gradients.py"
    script.write_text(GRADIENTS)
    proc = _torchrun([str(script), str(tmp_path / "two.pt"), str(omniglot_root)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    for preset in ("omniglot-5w1s-maml", "omniglot-5w1s-mtnet"):
        cfg = apply_overrides(load_config(preset), [f"data.root={omniglot_root}", "model.hidden=8"])
        learner = build_learner_from_config(cfg).double()
        batch = build_train_source(cfg).sample(8)
        learner.meta_backward(
            batch.__class__(batch.support_x.double(), batch.support_y, batch.query_x.double(),
                                              batch.query_y, batch.ways))
        one = {**{f"grad.{n}": p.grad for n, p in learner.named_parameters()},
               **learner.state_dict()}
        assert one.keys() == two[preset].keys()
        for key, want in one.items():
            if want.is_floating_point():
                torch.testing.assert_close(two[preset][key], want, rtol=1e-12, atol=1e-14,
                                           msg=f"{preset} {key}")
            else:
                assert torch.equal(two[preset][key], want), f"{preset} {key}"
        # the mask logits and T matrices (meta-parameters of MT-net) too
        if preset.endswith("mtnet"):
            assert {"grad.rule.rules.0.logits", "grad.model.classifier.transform",
                    "noise_rng"} <= set(one)


def test_resume_with_another_number_of_processes(omniglot_root, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    preset = "omniglot-5w1s-maml"
    run = tmp_path / "run"
    # a constant meta learning rate: a run extended from 2 to 4 iterations then takes the steps of a
    # 4-iteration
    # run (a cosine schedule's first steps depend on the run's length)
    constant = "optim.cosine=false"
    proc = _torchrun(["-m", "fewshot", "train", preset, "--out", str(run), "--quiet",
                      *[f"--set={o}"
                        for o in [*_overrides(omniglot_root, iterations=2), constant]]],
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 2 iterations") == 1  # rank 0 alone prints
    assert load_checkpoint(run / "last.pt")["iteration"] == 2
    cfg4 = apply_overrides(load_config(preset),
                           [*_overrides(omniglot_root, iterations=4), constant])
    resumed = train(cfg4, run, quiet=True)  # one process continues the two-process run
    assert resumed.resumed_from == 2
    straight = train(cfg4, tmp_path / "straight", quiet=True)
    _assert_same_training(resumed.learner.state_dict(), straight.learner.state_dict(), cfg4, 4)

    # the test episodes split over two processes and gathered give one process's report exactly
    evaluate = ["-m", "fewshot", "eval", str(run), "--episodes", "11", "--json", "--quiet",
                "--device", "cpu"]
    two = _torchrun(evaluate, cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, *evaluate], cwd=tmp_path, env=_env(), capture_output=True,
                         text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    assert len(two.stdout.splitlines()) == 1  # rank 0 alone prints
    assert json.loads(two.stdout) == json.loads(one.stdout)
    assert json.loads(one.stdout)["episodes"] == 11


def test_meta_batch_that_does_not_split_is_one_clear_error(omniglot_root, tmp_path):
    proc = _torchrun(
        ["-m", "fewshot", "train", "omniglot-5w1s-maml", "--out", str(tmp_path / "run"), "--quiet",
                      *[f"--set={o}" for o in _overrides(omniglot_root, meta_batch=3)]],
                     cwd=tmp_path)
    assert proc.returncode != 0
    assert "error: meta_batch=3 does not split evenly over 2 processes" in proc.stderr
    # one line from each rank, no traceback through our code
    assert str(REPO / "fewshot") not in proc.stderr


FAILING = textwrap.dedent('''
    import os, sys
    from fewshot.learners.base import GradientLearner
    # rank 1 fails in its second iteration; rank 0 waits in the all-reduce
    if os.environ["RANK"] == "1":
        original, calls = GradientLearner.meta_backward, []
        def failing(self, batch, **kw):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("injected failure on rank 1")
            return original(self, batch, **kw)
        GradientLearner.meta_backward = failing
    from fewshot.cli import entry
    entry()
''')


def test_a_failing_rank_ends_the_job_with_its_error(omniglot_root, tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    proc = _torchrun(
        [str(script), "train", "omniglot-5w1s-maml", "--out", str(tmp_path / "run"), "--quiet",
                      "--dist-timeout", "60",
                      *[f"--set={o}" for o in _overrides(omniglot_root, iterations=5)]],
                     cwd=tmp_path, timeout=240)
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr
    # rank 0 kept what it had written
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 1


def test_shares_cover_every_item_once_in_order():
    from fewshot.runtime.distributed import Ranks
    for count in (0, 1, 7, 10):
        for world in (1, 2, 3, 4):
            spans = [Ranks(r, world).share(count) for r in range(world)]
            assert spans[0][0] == 0 and spans[-1][1] == count
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            assert max(b - a for a, b in spans) - min(b - a for a, b in spans) <= 1


def test_noise_of_sharded_learners_is_the_whole_batch_noise():
    cfg = apply_overrides(load_config("omniglot-5w1s-mtnet"), ["model.hidden=8"])
    whole = build_learner_from_config(cfg)._noise(8, torch.device("cpu"))
    parts = []
    for rank in range(2):
        learner = build_learner_from_config(cfg)
        learner.shard_tasks(rank, 2)
        parts.append(learner._noise(4, torch.device("cpu")))
        assert torch.equal(learner.noise_rng, build_learner_from_config(cfg).noise_rng) is False
    assert torch.equal(torch.cat(parts), whole)


LEAVING = textwrap.dedent('''
    import atexit, sys
    from fewshot.runtime import distributed
    atexit.register(lambda: print("atexit ran"))
    print("done", end="")
    sys.stderr.write("err")
    distributed.leave(3)
''')


def test_leave_flushes_both_streams_and_skips_finalization():
    proc = subprocess.run([sys.executable, "-c", LEAVING], env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "done", "err")


def test_a_rank_of_the_fewshot_command_leaves_with_its_whole_output_and_status():
    # a rank as torchrun starts it (no group needed here)
    env = {**_env(), "WORLD_SIZE": "2", "RANK": "1"}
    listing = subprocess.run([sys.executable, "-m", "fewshot", "train", "--list-presets"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and listing.stdout.splitlines() == fewshot.list_presets()
    failing = subprocess.run([sys.executable, "-m", "fewshot", "train"], env=env,
                             capture_output=True, text=True,
                             timeout=120)
    assert failing.returncode == 2 and failing.stderr.startswith("error: no preset or config given")

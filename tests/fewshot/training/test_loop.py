"""The training loop: learning happens, NaN stops cleanly, best/last checkpoints, resume rules."""
from __future__ import annotations

import pytest
import torch

from fewshot.config import apply_overrides, get_preset
from fewshot.errors import CheckpointError, ConfigError, FewshotError
from fewshot.learners.maml import MAML
from fewshot.reporting import report_on_fixed_episodes
from fewshot.training.build import build_learner_from_config
from fewshot.training.checkpoint import load_checkpoint, load_learner_state
from fewshot.training.loop import train
from fewshot.training.metrics_log import read_metrics


def _cfg(*items):
    return apply_overrides(get_preset("sinusoid-maml"),
                           ["device=cpu", "val_episodes=20", "eval_episodes=100", "optim.lr=0.01", *items])


def test_sinusoid_meta_training_learns(tmp_path):
    cfg = _cfg("iterations=200", "val_every=50", "checkpoint_every=100")
    before = report_on_fixed_episodes(build_learner_from_config(cfg), cfg, steps=1)["mean"]
    result = train(cfg, tmp_path, quiet=True, tensorboard=False)
    learner = build_learner_from_config(cfg)
    load_learner_state(learner, load_checkpoint(tmp_path / "last.pt")["learner"])
    after = report_on_fixed_episodes(learner, cfg, steps=1)["mean"]
    assert after < 0.6 * before, (before, after)
    # best.pt holds the weights of the best validation score in the log
    vals = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "val"]
    assert [r["iteration"] for r in vals] == [50, 100, 150, 200]
    best = min(vals, key=lambda r: r["mse"])
    assert result.best_iteration == best["iteration"] and result.best_metric == best["mse"]
    assert load_checkpoint(tmp_path / "best.pt")["iteration"] == best["iteration"]
    trains = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert len(trains) == 20 and all({"loss", "mse", "lr"} <= set(r) for r in trains)


def test_nan_meta_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg("iterations=30", "val_every=0", "checkpoint_every=5")
    original = MAML.meta_backward  # what the loop calls (task-by-task backward)
    calls = {"n": 0}

    def poisoned(self, batch, *, epoch=0):
        calls["n"] += 1
        out = original(self, batch, epoch=epoch)
        if calls["n"] >= 8:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(MAML, "meta_backward", poisoned)
    with pytest.raises(FewshotError, match="meta-loss is nan at iteration 8: training stopped") as info:
        train(cfg, tmp_path, quiet=True, tensorboard=False)
    assert "\n" not in str(info.value)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["iteration"] == 5
    assert all(torch.isfinite(v).all() for v in ckpt["learner"].values() if v.is_floating_point())


def test_resume_rules(tmp_path):
    cfg = _cfg("iterations=6", "val_every=0", "checkpoint_every=3")
    with pytest.raises(ConfigError, match="--resume given but"):
        train(cfg, tmp_path / "a", resume=True, quiet=True, tensorboard=False)
    train(cfg, tmp_path / "a", quiet=True, tensorboard=False)
    before = (tmp_path / "a" / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, tmp_path / "a", resume=False, quiet=True, tensorboard=False)
    with pytest.raises(ConfigError, match="another config .*meta_batch"):
        train(apply_overrides(cfg, ["meta_batch=3"]), tmp_path / "a", quiet=True, tensorboard=False)
    with pytest.raises(CheckpointError, match="learner 'maml', not 'fomaml'"):
        train(apply_overrides(cfg, ["learner.name=fomaml"]), tmp_path / "a", quiet=True, tensorboard=False)
    assert (tmp_path / "a" / "last.pt").read_bytes() == before  # nothing overwritten
    # more iterations continue the same run
    result = train(apply_overrides(cfg, ["iterations=9"]), tmp_path / "a", quiet=True, tensorboard=False)
    assert result.resumed_from == 6 and load_checkpoint(tmp_path / "a" / "last.pt")["iteration"] == 9


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        train(_cfg("iterations=2"), blocker / "run", quiet=True, tensorboard=False)

"""The training loop: learning happens, NaN stops cleanly, best/last checkpoints, resume rules."""
from __future__ import annotations

import math
import os

import pytest
import torch

from fewshot.config import apply_overrides, get_preset
from fewshot.errors import CheckpointError, ConfigError, FewshotError
from fewshot.learners.maml import MAML
from fewshot.reporting import EpisodeProtocol, report_on_fixed_episodes
from fewshot.training.build import build_learner_from_config
from fewshot.training.checkpoint import load_checkpoint, load_learner_state
from fewshot.training.loop import train
from fewshot.training.metrics_log import read_metrics
from fewshot.training.run_folder import RunLock


def _cfg(*items):
    return apply_overrides(get_preset("sinusoid-maml"),
                           ["device=cpu", "val_episodes=20", "eval_episodes=100", "optim.lr=0.01",
                            *items])


def test_sinusoid_meta_training_learns(tmp_path):
    cfg = _cfg("iterations=200", "val_every=50", "checkpoint_every=100")
    one_step = EpisodeProtocol(steps=1)
    before = report_on_fixed_episodes(build_learner_from_config(cfg), cfg, one_step)["mean"]
    result = train(cfg, tmp_path, quiet=True, tensorboard=False)
    learner = build_learner_from_config(cfg)
    load_learner_state(learner, load_checkpoint(tmp_path / "last.pt")["learner"])
    after = report_on_fixed_episodes(learner, cfg, EpisodeProtocol(steps=1))["mean"]
    assert after < 0.6 * before, (before, after)
    # best.pt holds the weights of the best validation score in the log
    vals = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "val"]
    assert [r["iteration"] for r in vals] == [50, 100, 150, 200]
    best = min(vals, key=lambda r: r["mse"])
    assert result.best_iteration == best["iteration"] and result.best_metric == best["mse"]
    assert load_checkpoint(tmp_path / "best.pt")["iteration"] == best["iteration"]
    trains = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert len(trains) == 20 and all({"loss", "mse", "lr"} <= set(r) for r in trains)


@pytest.mark.parametrize("poison_at, kept", [
    # issue 14: never cite a missing file
    (1, "training stopped; no checkpoint was written; lower optim.lr"),
    (3, "training stopped; no checkpoint was written; lower optim.lr"),
    (8,
     "training stopped; the last good checkpoint {out}/last.pt (iteration 5) is untouched; lower "
     "optim.lr"),
])
@pytest.mark.parametrize("what", ["loss", "parameters"])
def test_non_finite_stops_before_any_checkpoint_is_written(tmp_path, monkeypatch, poison_at, kept,
                                                           what):
    """A NaN meta-loss, or meta-parameters made non-finite by the optimizer step (finite loss), stop
    the run before a checkpoint could hold them; the message says which checkpoint (if any) is
    kept."""
    cfg = _cfg("iterations=30", "val_every=0", "checkpoint_every=5")
    calls = {"n": 0}
    if what == "loss":
        original = MAML.meta_backward

        def poisoned(self, batch, *, epoch=0):
            calls["n"] += 1
            out = original(self, batch, epoch=epoch)
            if calls["n"] >= poison_at:
                out.loss = out.loss * float("nan")
            return out

        monkeypatch.setattr(MAML, "meta_backward", poisoned)
        head = f"meta-loss is nan at iteration {poison_at}: "
    else:
        step = torch.optim.Adam.step

        def blow_up(self, *args, **kwargs):
            calls["n"] += 1
            result = step(self, *args, **kwargs)
            if calls["n"] >= poison_at:
                with torch.no_grad():
                    self.param_groups[0]["params"][-1].fill_(float("inf"))
            return result

        monkeypatch.setattr(torch.optim.Adam, "step", blow_up)
        head = ("the meta-parameters became non-finite (NaN/inf) in the optimizer step of "
                f"iteration {poison_at}: ")
    with pytest.raises(FewshotError) as info:
        train(cfg, tmp_path, quiet=True, tensorboard=False)
    message = str(info.value)
    assert message.startswith(head) and kept.format(
        out=tmp_path) in message and "\n" not in message, message
    if poison_at < 5:
        assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()
    else:
        ckpt = load_checkpoint(tmp_path / "last.pt")
        assert ckpt["iteration"] == 5
        assert all(torch.isfinite(v).all() for v in ckpt["learner"].values()
                   if v.is_floating_point())


def test_finite_but_huge_lr_overflowing_adam_is_one_line(tmp_path):
    """optim.lr=1e38 is finite (allowed by the config) but Adam's step size overflows float32."""
    with pytest.raises(FewshotError) as info:
        train(_cfg("iterations=3", "val_every=0", "optim.lr=1e38"), tmp_path, quiet=True,
              tensorboard=False)
    assert str(info.value).startswith("the optimizer step of iteration 1 overflowed (")
    assert str(info.value).endswith(
        "): training stopped; no checkpoint was written; lower optim.lr or "
        "optim.weight_decay")
    assert not (tmp_path / "last.pt").exists()


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
        train(apply_overrides(cfg, ["learner.name=fomaml"]), tmp_path / "a", quiet=True,
              tensorboard=False)
    assert (tmp_path / "a" / "last.pt").read_bytes() == before  # nothing overwritten
    # more iterations continue the same run
    result = train(apply_overrides(cfg, ["iterations=9"]), tmp_path / "a", quiet=True,
                   tensorboard=False)
    assert result.resumed_from == 6 and load_checkpoint(tmp_path / "a" / "last.pt")[
        "iteration"] == 9


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder; choose another --out"):
        train(_cfg("iterations=2"), blocker / "run", quiet=True, tensorboard=False)


@pytest.mark.parametrize("sub", ["", "run"])
def test_read_only_out_is_refused_even_for_root(tmp_path, sub):
    """Issue 14: root could write into a folder with no write bits; like the data side, training
    refuses it."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError) as info:
            train(_cfg("iterations=2"), ro / sub, quiet=True, tensorboard=False)
        assert str(info.value) == f"cannot write into {ro} (read-only): choose another --out"
        assert list(ro.iterdir()) == []  # not even the lock file
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("full", ["metrics", "checkpoint"])
def test_full_disk_mid_run_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, full):
    import errno

    import episodes.files
    from fewshot.training.metrics_log import MetricsLogger

    cfg = _cfg("iterations=30", "val_every=0", "checkpoint_every=5", "log_every=1")
    if full == "metrics":
        write = MetricsLogger.write

        def disk_full(self, kind, iteration, **metrics):
            if iteration >= 7:
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(self, kind, iteration, **metrics)

        monkeypatch.setattr(MetricsLogger, "write", disk_full)
        expected = (
            f"cannot append to {tmp_path}/metrics.jsonl at iteration 7 (No space left on device): "
            "training "
            f"stopped; the last good checkpoint {tmp_path}/last.pt (iteration 5) is "
            "untouched; free disk space "
            "or choose another --out, then run the command again")
    else:
        replace = episodes.files.os.replace
        writes = {"last.pt": 0}

        def disk_full(src, dst):
            if os.path.basename(dst) == "last.pt":
                writes["last.pt"] += 1
                if writes["last.pt"] >= 2:
                    raise OSError(errno.ENOSPC, "No space left on device")
            return replace(src, dst)

        monkeypatch.setattr(episodes.files.os, "replace", disk_full)
        expected = (
            f"no space left on the disk to write {tmp_path}/last.pt (No space left on device): "
            "free disk "
            f"space or choose another --out (the last good checkpoint {tmp_path}/last.pt "
            "(iteration 5) is "
            "untouched)")
    with pytest.raises(FewshotError) as info:
        train(cfg, tmp_path, quiet=True, tensorboard=False)
    assert str(info.value) == expected
    assert load_checkpoint(tmp_path / "last.pt")["iteration"] == 5
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert not (tmp_path / ".run.lock").exists()  # the lock went with the run, as on every exit
    with RunLock(tmp_path):  # and the folder is free for the next run
        pass


def test_more_iterations_stretch_the_cosine_schedule_to_the_new_end(tmp_path):
    cfg = _cfg("iterations=20", "val_every=0", "checkpoint_every=10", "optim.cosine=true",
               "optim.min_lr=0.0001")
    train(cfg, tmp_path, quiet=True, tensorboard=False)
    train(apply_overrides(cfg, ["iterations=60"]), tmp_path, quiet=True, tensorboard=False)
    lrs = [r["lr"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    # extended after its end: the rest follows the 60-iteration cosine (not stuck at min_lr, no
    # climb-backs)
    assert len(lrs) == 6 and lrs[1] == pytest.approx(1e-4, rel=1e-6), lrs
    for it, lr in zip((30, 40, 50, 60), lrs[2:]):
        assert lr == pytest.approx(1e-4 + 0.5 * (0.01 - 1e-4) * (1 + math.cos(math.pi * it / 60)),
                                   rel=1e-6)
    assert load_checkpoint(tmp_path / "last.pt")["scheduler"]["T_max"] == 60


@pytest.mark.parametrize("best_step", [True, False])
def test_validation_whose_adaptation_diverges_is_reported_and_training_goes_on(tmp_path, capsys,
                                                                               best_step):
    """The quick start's crash (issue 23): 40 test steps of a large inner rate make some validation
    tasks' support loss non-finite. The run must finish; the val lines and one warning line say
    which tasks."""
    cfg = _cfg("iterations=20", "val_every=10", "checkpoint_every=10", "learner.inner_lr=0.5",
               "learner.eval_steps=40", f"learner.best_step={str(best_step).lower()}")
    result = train(cfg, tmp_path, quiet=True, tensorboard=False)
    assert result.iterations == 20 and load_checkpoint(tmp_path / "last.pt")["iteration"] == 20
    vals = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "val"]
    first = vals[0]
    assert first["nonfinite_tasks"] >= 1 and first["first_nonfinite_step"] >= 1
    assert first["diverged_tasks"] >= first["nonfinite_tasks"]
    assert len(first["diverged_episodes"]) == min(first["diverged_tasks"], 20)
    assert all(0 <= e < 20 for e in first["diverged_episodes"])
    if best_step:  # each diverged task predicted with an earlier, finite step: the score is finite
        assert math.isfinite(first["mse"]) and all(s < 40 for s in first["diverged_steps_used"])
    # the last step's predictions are used: a non-finite task scores mse inf, and training goes on
    else:
        assert float(first["mse"]) == float("inf") and all(s == 40
                                                           for s in first["diverged_steps_used"])
    err = capsys.readouterr().err
    assert ("warning: validation at iteration 10: on " in err
            and "became non-finite, first at inner step" in err)


def test_an_error_during_validation_names_the_iteration_and_the_checkpoint_kept(tmp_path,
                                                                                monkeypatch):
    import fewshot.training.loop as loop

    def broken(*args, **kwargs):
        raise FewshotError("the validation set broke")

    monkeypatch.setattr(loop, "validate", broken)
    with pytest.raises(FewshotError) as info:
        train(_cfg("iterations=20", "val_every=10", "checkpoint_every=5"), tmp_path, quiet=True,
              tensorboard=False)
    assert str(info.value) == (
        f"validation at iteration 10 failed: the validation set broke; the last good checkpoint "
        f"{tmp_path}/last.pt (iteration 5) is untouched")


def test_out_under_a_folder_this_user_cannot_look_into_is_one_line(tmp_path, monkeypatch, capsys):
    """Issue 23: a non-root user's ``--out /root/runs/x`` made ``Path.is_dir`` raise PermissionError
    (EACCES on stat); as root the test makes stat fail the same way under one folder."""
    from pathlib import Path

    from fewshot.cli import main

    locked = tmp_path / "locked"
    real_stat = Path.stat

    def stat(self, *args, **kwargs):
        if str(self).startswith(str(locked)):
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    assert main(
        ["train", "sinusoid-maml", "--out", str(locked / "run"), "--iterations", "2",
         "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: cannot look into {locked / 'run'} (Permission denied): choose another --out "
        "(a folder you can write into)\n")


def test_redirected_progress_has_no_nested_validation_bar(tmp_path, capsys):
    """Issue 23: the nested validation bar wrote cursor-up escapes (ESC [A) into redirected logs."""
    train(_cfg("iterations=4", "val_every=2", "val_episodes=4", "eval_batch=1"), tmp_path,
          quiet=False,
          tensorboard=False)
    err = capsys.readouterr().err  # pytest's capture is not a terminal, like `2> log`
    assert "\x1b[A" not in err and "validation:" not in err
    assert "4/4" in err  # the training bar itself is still there

"""`fewshot pretrained list|show|verify|publish|table` and `fewshot eval NAME` reproducing the manifest."""
from __future__ import annotations

import json

import torch

import fewshot.pretrained as pt
from fewshot.cli import main


def test_publish_then_eval_reproduces_manifest(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "sinusoid-maml", "--out", str(run), "--iterations", "8", "--quiet",
                 "--set", "val_every=4", "--set", "val_episodes=10"]) == 0
    assert main(["pretrained", "publish", str(run), "tiny-sine", "--dest", str(tmp_path / "models"),
                 "--episodes", "60"]) == 0
    monkeypatch.setattr(pt, "_REGISTERED", [])
    monkeypatch.setenv("FEWSHOT_PRETRAINED_PATH", str(tmp_path / "models"))
    capsys.readouterr()
    assert main(["pretrained", "list"]) == 0
    assert "tiny-sine" in capsys.readouterr().out
    assert main(["pretrained", "show", "tiny-sine"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert main(["eval", "tiny-sine", "--episodes", "60", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mean"] == manifest["mean"] and report["ci95"] == manifest["ci95"]
    assert main(["pretrained", "verify", "tiny-sine"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["pretrained", "table"]) == 0
    slim = capsys.readouterr().out
    assert "| tiny-sine | maml |" in slim and "[manifest](pretrained/tiny-sine/manifest.json)" in slim
    assert "run clock" not in slim  # the README's slim table: no training history
    assert main(["pretrained", "table", "--full"]) == 0
    full = capsys.readouterr().out
    assert "| tiny-sine | maml |" in full and "| iterations (ours / preset) |" in full and "manifest](" not in full
    assert main(["pretrained", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown pretrained model 'nope'" in err and err.count("\n") == 1


def test_calibrate_in_support_mode_starts_a_run_from_the_weights_as_they_are(tmp_path, capsys, omniglot_root):
    from fewshot.training.checkpoint import load_checkpoint
    from fewshot.training.loop import load_run_config

    run = tmp_path / "run"
    assert main(["pretrained", "calibrate", "omniglot-5w1s-metasgd", "--bn-mode", "support", "--out", str(run),
                 "--root", str(omniglot_root), "--set", "val_episodes=10"]) == 0
    assert "support-set statistics: validation" in capsys.readouterr().out
    cfg = load_run_config(run)
    learner_cfg = cfg.learner.config
    shipped = pt.load("omniglot-5w1s-metasgd")
    assert learner_cfg.bn_mode == "support" and learner_cfg.per_step_bn == shipped.config.per_step_bn
    state = load_checkpoint(run / "best.pt")["learner"]
    for k, v in shipped.state_dict().items():  # nothing calibrated: the run starts from the shipped weights
        assert torch.equal(state[k], v), k

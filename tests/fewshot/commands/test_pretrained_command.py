"""`fewshot pretrained list|show|verify|publish|table` and `fewshot eval NAME` reproducing the
manifest."""
from __future__ import annotations

import json

import torch

import fewshot.pretrained as pt
from fewshot.cli import main
from tests.fewshot.commands.published import publish_tiny_sine


def test_publish_then_eval_reproduces_manifest(tmp_path, capsys, monkeypatch):
    publish_tiny_sine(tmp_path, monkeypatch, "tiny-sine", iterations=8, val_every=4, episodes=60)
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
    assert ("| tiny-sine | maml |" in slim
            and "[manifest](pretrained/tiny-sine/manifest.json)" in slim)
    assert "run clock" not in slim  # the README's slim table: no training history
    assert main(["pretrained", "table", "--full"]) == 0
    full = capsys.readouterr().out
    assert ("| tiny-sine | maml |" in full and "| iterations (ours / preset) |" in full
            and "manifest](" not in full)
    assert main(["pretrained", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown pretrained model 'nope'" in err and err.count("\n") == 1


def test_calibrate_in_support_mode_starts_a_run_from_the_weights_as_they_are(tmp_path, capsys,
                                                                             omniglot_root):
    from fewshot.training.checkpoint import load_checkpoint
    from fewshot.training.run_folder import load_run_config

    run = tmp_path / "run"
    assert main(
        ["pretrained", "calibrate", "omniglot-5w1s-metasgd", "--bn-mode", "support", "--out",
         str(run),
                 "--root", str(omniglot_root), "--set", "val_episodes=10"]) == 0
    assert "support-set statistics: validation" in capsys.readouterr().out
    cfg = load_run_config(run)
    learner_cfg = cfg.learner.config
    shipped = pt.load("omniglot-5w1s-metasgd")
    assert (learner_cfg.bn_mode == "support" and learner_cfg.per_step_bn
            == shipped.config.per_step_bn)
    state = load_checkpoint(run / "best.pt")["learner"]
    # nothing calibrated: the run starts from the shipped weights
    for k, v in shipped.state_dict().items():
        assert torch.equal(state[k], v), k


def test_publish_records_both_batch_norm_numbers_of_an_image_model(tmp_path, omniglot_root,
                                                                   monkeypatch):
    """The manifest's two accuracies (shipped mode and transductive) of a batch-norm Omniglot model,
    checked against an independent route: the fixed test episodes run through ``learner.evaluate``
    by hand, once per batch-norm mode, and averaged here (publish goes through the reporting
    layer)."""
    from fewshot.config import apply_overrides, load_config
    from fewshot.scoring import summarize
    from fewshot.training.build import TEST_SEED, build_fixed_set

    run = tmp_path / "run"
    assert main(["train", "omniglot-5w1s-maml", "--out", str(run), "--iterations", "3", "--quiet",
                 "--set", "meta_batch=2", "--set", "val_every=3", "--set", "val_episodes=10",
                 "--set", "learner.bn_mode=support", "--set", f"data.root={omniglot_root}"]) == 0
    assert main(["pretrained", "publish", str(run), "tiny-omni", "--dest", str(tmp_path / "models"),
                 "--episodes", "30"]) == 0
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    monkeypatch.setenv("FEWSHOT_PRETRAINED_PATH", str(tmp_path / "models"))
    manifest = pt.show("tiny-omni")
    learner = pt.load("tiny-omni").eval()
    cfg = apply_overrides(load_config("omniglot-5w1s-maml"), [f"data.root={omniglot_root}"])
    fixed = build_fixed_set(cfg, "test", count=30, seed=TEST_SEED)
    for mode, published in (("support", manifest["non_transductive"]),
                            ("transductive", manifest["transductive"])):
        learner.config.bn_mode = mode
        values = torch.cat([learner.evaluate(b, steps=manifest["test_steps"])["accuracy"].double()
                            for b in fixed.batches(25)])
        expected = summarize(values)
        assert published["bn_mode"] == mode
        assert (published["mean"], published["ci95"]) == (expected.mean, expected.ci95), mode
    assert (manifest["mean"], manifest["ci95"]) == (manifest["non_transductive"]["mean"],
                                                    manifest["non_transductive"]["ci95"])


def test_calibrate_in_frozen_mode_stores_the_average_batch_statistics(tmp_path, capsys,
                                                                      omniglot_root):
    from fewshot.training.checkpoint import load_checkpoint
    from fewshot.training.run_folder import load_run_config

    run = tmp_path / "run"
    assert main(
        ["pretrained", "calibrate", "omniglot-5w1s-maml", "--bn-mode", "frozen", "--out", str(run),
                 "--root", str(omniglot_root), "--tasks", "8", "--set", "val_episodes=10"]) == 0
    assert "validation" in capsys.readouterr().out
    cfg = load_run_config(run)
    assert cfg.learner.config.bn_mode == "frozen" and cfg.learner.config.per_step_bn
    state = load_checkpoint(run / "best.pt")["learner"]
    shipped = pt.load("omniglot-5w1s-maml").state_dict()
    means = [k for k in state if k.endswith("running_mean")]
    assert means and all(torch.isfinite(state[k]).all() for k in means)
    stats = ("running_mean", "running_var", "num_batches_tracked")
    same = [k for k, v in state.items() if not k.endswith(stats) and shipped[k].shape == v.shape]
    # the shipped weights, as they were
    assert same and all(torch.equal(state[k], shipped[k]) for k in same)
    assert any(not torch.equal(state[k][0], torch.zeros_like(state[k][0])) for k in means)

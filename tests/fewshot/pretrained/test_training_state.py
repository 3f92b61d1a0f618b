"""A published model ships its training state: `fewshot train --from-pretrained NAME` continues its
run bit-identically to the uninterrupted run, and refuses a missing or mismatched state with one
clear line."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import fewshot.pretrained as pt
from episodes.files import sha256_file
from fewshot.cli import main
from fewshot.config.manifest import Manifest, read_manifest
from fewshot.errors import CheckpointError
from fewshot.pretrained.training_state import BEST_STATE, METRICS, STATE, read_training_state
from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.metrics_log import read_metrics
from tests.fewshot.training.test_resume import _assert_same_tree

# iterations, validation, logging and checkpoints all fall on multiples of 5, so a run stopped at 10
# and
# continued is the same run as one trained straight through (no extra end-of-run validation at 10)
BASE = ["--quiet", "--device", "cpu", "--set", "val_every=5", "--set", "val_episodes=10", "--set",
        "log_every=5",
        "--set", "checkpoint_every=5"]
STATE_KEYS = ("iteration", "learner", "optimizer", "scheduler", "sources", "rng", "extra")


def _train(out, iterations, *extra):
    assert main(
        ["train", "sinusoid-maml", "--out", str(out), "--iterations", str(iterations), *BASE,
         *extra]) == 0


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    monkeypatch.setenv("FEWSHOT_PRETRAINED_PATH", str(tmp_path / "models"))
    monkeypatch.setenv("FEWSHOT_DATA", str(tmp_path / "no-data"))
    return tmp_path / "models"


def _publish(run, name, models):
    assert main(
        ["pretrained", "publish", str(run), name, "--dest", str(models), "--episodes", "20"]) == 0
    return json.loads((models / name / "manifest.json").read_text())


# lr 0.001: the best validation is at the last iteration (one state file); lr 0.05: best at 5, last
# at 10
@pytest.mark.parametrize("lr, best_at", [("0.001", 10), ("0.05", 5)])
def test_continued_run_is_the_uninterrupted_run(tmp_path, models, lr, best_at):
    lr_set = ["--set", f"optim.lr={lr}"]
    _train(tmp_path / "full", 20, *lr_set)
    _train(tmp_path / "part", 10, *lr_set)
    manifest = _publish(tmp_path / "part", "tiny", models)
    ts = manifest["training_state"]
    assert ts["last"]["iteration"] == 10 and ts["best"]["iteration"] == best_at == manifest[
        "checkpoint_iteration"]
    shipped = sorted(p.name for p in (models / "tiny").iterdir())
    assert shipped == sorted(["manifest.json", "model.safetensors", STATE, METRICS]
                             + ([BEST_STATE] if best_at != 10 else []))
    # the curve in the manifest is the run's validation log
    val = [r for r in read_metrics(tmp_path / "part" / "metrics.jsonl") if r["kind"] == "val"]
    assert manifest["validation_curve"] == [{k: v for k, v in r.items() if k != "kind"}
                                            for r in val]
    assert [p["iteration"] for p in manifest["validation_curve"]] == [5, 10]
    # the shipped state is the run's last.pt, with a portable config, loadable without running code
    raw = torch.load(models / "tiny" / STATE, weights_only=True)
    assert raw["config"]["data"]["root"] is None and raw["config"]["device"] == "auto"
    _assert_same_tree({k: raw[k] for k in STATE_KEYS},
                      {k: load_checkpoint(tmp_path / "part" / "last.pt")[k] for k in STATE_KEYS},
                      "shipped")

    # seeded and not trained further, the folder is the original run folder (best.pt included)
    assert main(
        ["train", "--from-pretrained", "tiny", "--out", str(tmp_path / "cont"), "--iterations",
         "10",
                 "--quiet"]) == 0
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(tmp_path / "part" / name), load_checkpoint(tmp_path / "cont" / name)
        _assert_same_tree({k: a[k] for k in STATE_KEYS}, {k: b[k] for k in STATE_KEYS}, name)
    assert read_metrics(tmp_path / "part" / "metrics.jsonl") == read_metrics(
        tmp_path / "cont" / "metrics.jsonl")
    assert main(
        ["train", "--from-pretrained", "tiny", "--iterations", "20", "--out",
         str(tmp_path / "cont"),
                 "--device", "cpu", "--quiet"]) == 0
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(
        tmp_path / "cont" / "last.pt")
    for key in STATE_KEYS:
        _assert_same_tree(a[key], b[key], key)
    _assert_same_tree(load_checkpoint(tmp_path / "full" / "best.pt")["learner"],
                      load_checkpoint(tmp_path / "cont" / "best.pt")["learner"], "best")
    assert read_metrics(tmp_path / "full" / "metrics.jsonl") == read_metrics(
        tmp_path / "cont" / "metrics.jsonl")
    # the run clock carries on: the shipped session, then the continuation (the empty one wrote no
    # checkpoint)
    assert [(s["from_iteration"], s["to_iteration"]) for s in b["clock"]["sessions"]] == [(0, 10),
                                                                                          (10, 20)]


def test_a_run_published_at_its_last_state_with_an_earlier_best_continues(tmp_path, models,
                                                                          monkeypatch):
    """Model selection may publish the last state while best.pt is earlier: the shipped state still
    verifies against the weights and the continuation is the original run folder."""
    import importlib

    from fewshot.reporting.selection import Selection

    # the module (the package exports the function)
    publish = importlib.import_module("fewshot.reporting.publish")

    _train(tmp_path / "part", 10, "--set", "optim.lr=0.05")  # best validation at 5, last at 10
    monkeypatch.setattr(publish, "choose_checkpoint", lambda *a, last_iteration, best_iteration,
                        **k: Selection(
        "last", last_iteration, best_iteration, 20, 1, "mse", 1.0, 0.9, 0.1, 0.2, "within noise"))
    manifest = _publish(tmp_path / "part", "tiny", models)
    assert manifest["checkpoint_iteration"] == 10 and manifest["selection"]["chosen"] == "last"
    assert manifest["training_state"]["best"]["iteration"] == 5
    weights = load_file(str(models / "tiny" / "model.safetensors"))
    last = load_checkpoint(tmp_path / "part" / "last.pt")["learner"]
    assert all(torch.equal(weights[k], last[k]) for k in weights)
    assert main(
        ["train", "--from-pretrained", "tiny", "--out", str(tmp_path / "cont"), "--iterations",
         "10",
                 "--quiet"]) == 0
    for name in ("last.pt", "best.pt"):
        assert load_checkpoint(tmp_path / "cont" / name)["iteration"] == (10 if name == "last.pt"
                                                                          else 5)


def test_cosine_schedule_is_extended_as_a_local_resume_extends_it(tmp_path, models):
    cos = ["--set", "optim.cosine=true", "--set", "optim.lr=0.01"]
    _train(tmp_path / "part", 10, *cos)
    _publish(tmp_path / "part", "tiny-cos", models)
    assert main(
        ["train", "--from-pretrained", "tiny-cos", "--iterations", "20", "--out",
         str(tmp_path / "cont"),
                 "--quiet"]) == 0
    _train(tmp_path / "part", 20, *cos)  # the original folder resumed and extended in place
    a, b = load_checkpoint(tmp_path / "part" / "last.pt"), load_checkpoint(
        tmp_path / "cont" / "last.pt")
    assert a["scheduler"] is not None and a["scheduler"]["T_max"] != 10
    for key in STATE_KEYS:
        _assert_same_tree(a[key], b[key], key)
    assert read_metrics(tmp_path / "part" / "metrics.jsonl") == read_metrics(
        tmp_path / "cont" / "metrics.jsonl")


def test_default_out_and_an_existing_continuation_is_resumed(tmp_path, models, monkeypatch, capsys):
    _train(tmp_path / "part", 10)
    _publish(tmp_path / "part", "tiny", models)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--from-pretrained", "tiny", "--iterations", "15", "--quiet"]) == 0
    assert load_checkpoint(tmp_path / "runs" / "tiny" / "last.pt")["iteration"] == 15
    assert "resumed from iteration 10" in capsys.readouterr().out
    assert main(["train", "--from-pretrained", "tiny", "--iterations", "20", "--quiet"]) == 0
    # the folder's own run, not the shipped state
    assert "resumed from iteration 15" in capsys.readouterr().out
    # a folder holding another run is refused, as `fewshot train` refuses it today
    _train(tmp_path / "other", 10, "--set", "optim.lr=0.05")
    assert main(
        ["train", "--from-pretrained", "tiny", "--iterations", "20", "--out",
         str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert "holds a run with another config (optim.lr" in err and err.count("\n") == 1


def test_options_that_change_the_run_are_refused(tmp_path, models, capsys):
    _train(tmp_path / "part", 10)
    _publish(tmp_path / "part", "tiny", models)
    out = str(tmp_path / "cont")
    assert main(["train", "--from-pretrained", "tiny", "--out", out, "--set", "meta_batch=5"]) == 2
    err = capsys.readouterr().err
    assert "only --iterations, --device and data.root may differ" in err and "meta_batch" in err
    assert main(["train", "sinusoid-maml", "--from-pretrained", "tiny", "--out", out]) == 2
    assert "give no PRESET_OR_CONFIG" in capsys.readouterr().err
    assert main(["train", "--from-pretrained", "tiny", "--out", out, "--iterations", "5"]) == 2
    assert "stopped at iteration 10 > iterations=5" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "--from-pretrained", "tiny", "--out", out, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    # a shipped learned optimizer
    assert main(["train", "--from-pretrained", "l2o-quadratic", "--out", out]) == 2
    assert "not a meta-initialization trained by `fewshot train`" in capsys.readouterr().err
    assert not (tmp_path / "cont").exists()  # nothing written by a refused command


def _manifest(models, name):
    return json.loads((models / name / "manifest.json").read_text())


def test_missing_or_mismatched_state_is_one_clear_error(tmp_path, models, capsys):
    _train(tmp_path / "part", 10)
    _publish(tmp_path / "part", "tiny", models)
    out = str(tmp_path / "cont")

    def refused(match):
        assert main(["train", "--from-pretrained", "tiny", "--out", out]) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, err
        assert not (tmp_path / "cont").exists()

    path = models / "tiny" / "manifest.json"
    good = path.read_text()
    # an older manifest: no training_state at all
    m = json.loads(good)
    del m["training_state"]
    path.write_text(json.dumps(m))
    refused(
        "ships no training state (it was published before models carried their training state): it "
        "cannot be "
        "continued; use `fewshot pretrained calibrate tiny --out DIR`")
    # a manifest that says why (an old model whose run folder is gone)
    m["training_state"], m["training_state_note"] = None, "its run folder no longer exists"
    path.write_text(json.dumps(m))
    refused("ships no training state (its run folder no longer exists)")
    path.write_text(good)
    # the state file replaced: checksum
    state = models / "tiny" / STATE
    saved = state.read_bytes()
    assert main(["pretrained", "verify", "tiny"]) == 0
    said = "tiny: training state OK (stopped at iteration 10, weights from iteration 10)"
    assert said in capsys.readouterr().out
    state.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
    refused("fails the sha256 check")
    assert main(["pretrained", "verify", "tiny"]) == 2
    assert "fails the sha256 check" in capsys.readouterr().err
    state.unlink()
    refused("lacks its training state file")
    # the state of another run (its checksum re-recorded): its learner is not the published weights
    _train(tmp_path / "other", 10, "--set", "optim.lr=0.05")
    _publish(tmp_path / "other", "other", models)
    shutil.copy(models / "other" / STATE, state)
    m = json.loads(good)
    m["training_state"]["last"]["sha256"] = m["training_state"]["best"]["sha256"] = sha256_file(
        state)
    path.write_text(json.dumps(m))
    refused("is from another run than its weights (optim.lr")


def test_state_of_same_config_but_other_weights_is_refused(tmp_path, models):
    _train(tmp_path / "part", 10)
    _publish(tmp_path / "part", "tiny", models)
    _train(tmp_path / "part2", 5)  # same config, fewer iterations: other weights
    _publish(tmp_path / "part2", "tiny5", models)
    m = _manifest(models, "tiny")
    shutil.copy(models / "tiny5" / STATE, models / "tiny" / STATE)
    for k in ("last", "best"):
        m["training_state"][k].update(sha256=sha256_file(models / "tiny" / STATE), iteration=5)
    with pytest.raises(CheckpointError, match="does not match its weights"):
        read_training_state(models / "tiny", Manifest.from_json(m), "tiny")


def test_every_shipped_model_ships_a_state_that_matches_its_weights_or_says_why_not():
    checked = 0
    for model_dir in sorted(p for p in pt.package_dir().iterdir()
                            if (p / "manifest.json").is_file()):
        m = read_manifest(model_dir)
        if m.get("kind", "meta-initialization") != "meta-initialization":
            continue
        checked += 1
        if m.get("training_state") is None:
            assert m.get("training_state_note"), f"{model_dir.name}: no state and no word on why"
            with pytest.raises(CheckpointError,
                               match=rf"ships no training state \({m['training_state_note']}\)"):
                read_training_state(model_dir, m, model_dir.name)
        else:
            last, _, files = read_training_state(model_dir, m, model_dir.name)
            assert last["iteration"] == m["trained_iterations"] and set(files) >= {"last.pt",
                                                                                   "best.pt"}
    assert checked >= 7


def test_image_model_with_batch_norm_continues_and_data_is_checked_first(tmp_path, models,
                                                                         omniglot_root, capsys):
    small = ["--quiet", "--device", "cpu", "--set", "val_every=2", "--set", "val_episodes=10",
             "--set", "meta_batch=2",
             "--set", "model.hidden=8", "--set", "checkpoint_every=2", "--set", "log_every=2",
             "--set", f"data.root={omniglot_root}"]
    part = tmp_path / "part"
    assert main(
        ["train", "omniglot-5w1s-maml", "--out", str(part), "--iterations", "2", *small]) == 0
    _publish(part, "tiny-omni", models)
    # no data where the (portable) shipped config looks: refused before anything is written
    assert main(
        ["train", "--from-pretrained", "tiny-omni", "--out", str(tmp_path / "cont"), "--iterations",
         "4"]) == 2
    assert "no omniglot store" in capsys.readouterr().err and not (tmp_path / "cont").exists()
    assert main(
        ["train", "--from-pretrained", "tiny-omni", "--out", str(tmp_path / "cont"), "--iterations",
         "4",
                 "--quiet", "--set", f"data.root={omniglot_root}"]) == 0
    assert main(
        ["train", str(part / "config.yaml"), "--out", str(part), "--iterations", "4",
         "--quiet"]) == 0
    a, b = load_checkpoint(part / "last.pt"), load_checkpoint(tmp_path / "cont" / "last.pt")
    assert any(k.endswith("running_mean") for k in a["learner"])  # a batch-norm model
    for key in STATE_KEYS:
        _assert_same_tree(a[key], b[key], key)
    assert read_metrics(part / "metrics.jsonl") == read_metrics(tmp_path / "cont" / "metrics.jsonl")

"""`fewshot eval`: JSON report, determinism, run dir / checkpoint / pretrained targets, bad
input."""
from __future__ import annotations

import json

import pytest
import torch

import fewshot.pretrained as pt
from fewshot.cli import main
from fewshot.scoring import summarize


@pytest.fixture(scope="module")
def sine_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    assert main(["train", "sinusoid-maml", "--out", str(run), "--iterations", "10", "--quiet",
                 "--set", "val_every=5", "--set", "val_episodes=10"]) == 0
    return run


def _json(capsys, *argv):
    assert main(list(argv)) == 0
    out, _ = capsys.readouterr()
    return json.loads(out.strip().splitlines()[-1])


def test_eval_json_is_deterministic_and_complete(sine_run, capsys):
    a = _json(capsys, "eval", str(sine_run), "--episodes", "40", "--json", "--steps", "1")
    b = _json(capsys, "eval", str(sine_run / "best.pt"), "--episodes", "40", "--json", "--steps",
              "1")
    assert a == b
    for key in ("metric", "mean", "ci95", "episodes", "ways", "shots", "queries", "dataset",
                "split"):
        assert key in a
    assert a["metric"] == "mse" and a["episodes"] == 40 and a["dataset"] == "sinusoid" and a[
        "split"] == "test"
    # the first 20 of the 40 episodes are the 20-episode set: the 40-episode mean lies within reach
    c = _json(capsys, "eval", str(sine_run), "--episodes", "20", "--json", "--steps", "1")
    assert c["episodes"] == 20 and c["mean"] != a["mean"]


def test_eval_ci_matches_per_episode_values(sine_run, capsys):
    from fewshot.training.build import build_fixed_set, build_learner_from_config
    from fewshot.training.checkpoint import load_checkpoint, load_learner_state
    from fewshot.training.run_folder import load_run_config

    report = _json(capsys, "eval", str(sine_run), "--episodes", "30", "--json")
    cfg = load_run_config(sine_run)
    learner = build_learner_from_config(cfg)
    load_learner_state(learner, load_checkpoint(sine_run / "best.pt")["learner"])
    learner.eval()
    values = []
    # another batch size: same episodes
    for batch in build_fixed_set(cfg, "test", count=30).batches(7):
        values += learner.evaluate(batch)["mse"].tolist()
    s = summarize(values)
    assert report["mean"] == pytest.approx(s.mean,
                                           rel=1e-6) and report["ci95"] == pytest.approx(s.ci95,
                                                                                         rel=1e-6)


@pytest.mark.parametrize("target, message", [
    ("no-such-model",
     "'no-such-model' is neither a file or folder here nor a pretrained model: pass a run folder"),
    ("omniglot-5w1s-mam", "did you mean the pretrained model 'omniglot-5w1s-maml'?"),
    ("runs/does-not-exist",
     "runs/does-not-exist does not exist: check the path (a run folder or a checkpoint file)"),
    ("missing.pt", "does not exist"),
])
def test_eval_bad_targets(tmp_path, capsys, target, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", target]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_eval_tells_a_run_without_checkpoint_yet_from_a_folder_that_is_no_run(sine_run, tmp_path,
                                                                              capsys):
    from fewshot.training.run_folder import RunLock

    young = tmp_path / "young"
    young.mkdir()
    (young / "config.yaml").write_bytes((sine_run / "config.yaml").read_bytes())
    assert main(["eval", str(young)]) == 2
    err = capsys.readouterr().err
    assert f"run folder {young} has no checkpoint yet (last.pt): training writes one every" in err
    assert "writing it now" not in err and err.count("\n") == 1
    with RunLock(young):  # a training run holds the folder
        assert main(["eval", str(young)]) == 2
        assert "a training run is writing it now: training writes one every" in capsys.readouterr(
            ).err
    assert main(["eval", str(tmp_path)]) == 2
    assert "is not a run directory (no config.yaml)" in capsys.readouterr().err


def test_eval_corrupt_checkpoint(sine_run, tmp_path, capsys):
    raw = bytearray((sine_run / "best.pt").read_bytes())
    weights = torch.load(sine_run / "best.pt", weights_only=True)["learner"]
    tensor = next(v for v in weights.values() if v.is_floating_point() and v.numel() > 8)
    at = bytes(raw).find(tensor.contiguous().numpy().tobytes())
    assert at > 0
    raw[at + 5] ^= 1  # one flipped bit in the weights: torch.load alone would not notice
    (tmp_path / "bad.pt").write_bytes(bytes(raw))
    assert main(["eval", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr().err
    assert "corrupted" in err and err.count("\n") == 1


def test_eval_shows_an_episode_progress_bar_on_stderr_unless_quiet(sine_run, capsys):
    assert main(["eval", str(sine_run), "--episodes", "30", "--json"]) == 0
    out, err = capsys.readouterr()
    # stdout stays one JSON line
    assert "evaluating" in err and "0/30" in err and json.loads(out)["episodes"] == 30
    assert main(["eval", str(sine_run), "--episodes", "30", "--json", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and json.loads(out)["episodes"] == 30


def test_eval_bn_mode_switches_the_statistics_of_a_pretrained_model(omniglot_root, capsys):
    """--bn-mode scores the same weights with another batch-norm mode: the model's own mode gives
    the default report exactly, batch statistics (transductive) another one; the report says
    which.  (A model far from 100%, so that the two modes' 20-episode means differ: the MAML model
    scores 1.0 in both on these episodes.)"""
    model = "omniglot-5w1s-metasgd"
    args = ["eval", model, "--episodes", "20", "--json", "--root", str(omniglot_root)]
    default = _json(capsys, *args)
    own = _json(capsys, *args, "--bn-mode", default["bn_mode"])
    trans = _json(capsys, *args, "--bn-mode", "transductive")
    assert default["bn_mode"] == pt.show(model)["bn_mode"] != "transductive" and own == default
    assert trans["bn_mode"] == "transductive" and trans["mean"] != default["mean"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--bn-mode", "batch"])
    assert exc.value.code == 2 and "invalid choice: 'batch'" in capsys.readouterr().err

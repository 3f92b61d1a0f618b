"""`fewshot train` + `fewshot eval` on real Omniglot (omniglot_root: $FEWSHOT_DATA or a
download)."""
from __future__ import annotations

import json

import pytest

from fewshot.cli import main
from fewshot.training.build import build_fixed_set, build_learner_from_config
from fewshot.training.checkpoint import load_checkpoint, load_learner_state
from fewshot.training.run_folder import load_run_config


@pytest.mark.slow
def test_omniglot_train_eval_pipeline(omniglot_root, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    rc = main(["train", "omniglot-5w1s-maml", "--out", str(run), "--iterations", "4", "--quiet",
               "--set", f"data.root={omniglot_root}", "--set", "model.hidden=8", "--set",
               "meta_batch=4",
               "--set", "val_every=2", "--set", "val_episodes=10"])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["dataset"], report["split"], report["ways"], report["shots"],
            report["queries"]) == \
        ("omniglot", "maml-test", 5, 1, 1)
    assert report["episodes"] == 30 and report["metric"] == "accuracy"
    # oracle: adapt on each fixed test episode's support set by hand, count correct query
    # predictions
    cfg = load_run_config(run)
    learner = build_learner_from_config(cfg)
    load_learner_state(learner, load_checkpoint(run / "best.pt")["learner"])
    learner.eval()
    correct = 0
    for batch in build_fixed_set(cfg, "test", count=30).batches(30):
        for i in range(len(batch)):
            t = batch.task(i)
            params = learner.adapt(t.support_x, t.support_y, ways=batch.ways)
            predicted = learner.predict(t.query_x, params).argmax(-1)
            correct += int((predicted == t.query_y).sum())
    assert abs(report["mean"] - correct / 150) < 1e-6  # 30 episodes x 5 queries
    assert main(["eval", str(run), "--episodes", "30", "--json", "--split", "val"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"

    # the data root is not found: one line naming the exact prepare command
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", str(run), "--root", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"fewshot prepare omniglot --root {empty}" in err

"""`fewshot train` + `fewshot eval` on real Omniglot (omniglot_root fixture: fails without $FEWSHOT_DATA)."""
from __future__ import annotations

import json

from fewshot.cli import main


def test_omniglot_train_eval_pipeline(omniglot_root, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    rc = main(["train", "omniglot-5w1s-maml", "--out", str(run), "--iterations", "4", "--quiet",
               "--set", f"data.root={omniglot_root}", "--set", "model.hidden=8", "--set", "meta_batch=4",
               "--set", "val_every=2", "--set", "val_episodes=10"])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["dataset"], report["split"], report["ways"], report["shots"], report["queries"]) == \
        ("omniglot", "test", 5, 1, 1)
    assert report["episodes"] == 30 and 0.0 <= report["mean"] <= 1.0 and report["metric"] == "accuracy"
    # per-episode accuracies are multiples of 1/5 (5 queries): the mean over 30 is a multiple of 1/150
    assert abs(report["mean"] * 150 - round(report["mean"] * 150)) < 1e-4  # float32 per-task values
    assert main(["eval", str(run), "--episodes", "30", "--json", "--split", "val"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"

    # the data root is not found: one line naming the exact prepare command
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", str(run), "--root", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"fewshot prepare omniglot --root {empty}" in err

import json

from fewshot.cli import main


def test_train_then_experiment_from_the_command_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "opt"
    assert main(
        ["l2o", "train", "quadratic", "--out", str(out), "--set", "epochs=1", "--set",
         "iterations_per_epoch=2",
                 "--set", "problems_per_iteration=4", "--set", "val_problems=2", "--set",
                 "steps=10",
                 "--set", "unroll=5"]) == 0
    printed = capsys.readouterr()
    assert "meta-training" in printed.err and "0/2" in printed.err  # the progress bar, on stderr
    assert printed.out.splitlines()[0].startswith(
        "epoch   0") and "meta-training" not in printed.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "l2o-quadratic" and manifest["meta_train"]["unroll"] == 5
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    assert main(
        ["l2o", "experiment", "quadratic", "--optimizer", str(out), "--out", str(tmp_path / "figs"),
                 "--test-problems", "3", "--tune-problems", "2", "--steps", "5"]) == 0
    assert (tmp_path / "figs" / "quadratic.png").is_file() and (
        tmp_path / "figs" / "quadratic.json").is_file()
    assert "| quadratic | 5 |" in capsys.readouterr().out
    monkeypatch.setenv("FEWSHOT_PRETRAINED_PATH", str(out))
    assert main(["pretrained", "list"]) == 0 and main(
        ["pretrained", "verify", "l2o-quadratic"]) == 0
    listing = capsys.readouterr().out
    assert ("l2o-quadratic\tlearned-optimizer\ttrained on quadratic" in listing
            and "sha256" in listing)


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    for argv, msg in ((["--set", "unroll=30", "--set", "steps=20"], "unroll (30) is longer than"),
                      (["--set", "net.p=0"], "p must be a finite number > 0"),
                      (["--set", "epocs=3"], "did you mean 'epochs'"),
                      # issue 23: --epochs was no option, so argparse printed the top-level usage
                      # line only
                      (["--epochs", "-1"], "error: meta-training epochs must be >= 1, got -1"),
                      (["--epochs", "2", "--bogus"],
                       "error: fewshot l2o train does not take --bogus: see "
                       "`fewshot l2o train --help` for its options")):
        assert main(["l2o", "train", "quadratic", "--out", str(tmp_path / "x")] + argv) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    assert main(["l2o", "experiment", "nope"]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_list_names_problems_and_experiments(capsys):
    assert main(["l2o", "list"]) == 0
    out = capsys.readouterr().out
    assert "mnist-relu" in out and "fashion-mnist" in out and "quadratic" in out


def test_experiment_progress_bar_counts_optimizer_runs_unless_quiet(tmp_path, capsys):
    from fewshot.l2o.baselines import BASELINES, LR_GRID

    argv = ["l2o", "experiment", "quadratic", "--out", str(tmp_path), "--test-problems", "2",
            "--tune-problems", "2",
            "--steps", "2"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    # the tuning grid, then the learned and tuned runs
    runs = len(BASELINES) * len(LR_GRID) + 1 + len(BASELINES)
    assert f"0/{runs}" in err and "quadratic" in err and "| quadratic | 2 |" in out
    assert main(argv + ["--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "| quadratic | 2 |" in out

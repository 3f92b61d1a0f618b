"""`fewshot train` end to end (in-process CLI): runs with no data, one-line errors, nothing
overwritten."""
from __future__ import annotations

import pytest
import torch

from fewshot.cli import main
from fewshot.training.checkpoint import load_checkpoint


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """A fresh install: FEWSHOT_DATA points to an empty folder."""
    empty = tmp_path / "empty-data"
    empty.mkdir()
    monkeypatch.setenv("FEWSHOT_DATA", str(empty))
    return empty


def test_sinusoid_runs_without_data(tmp_path, capsys, no_data):
    rc, out, err = _run(capsys, "train", "sinusoid-maml", "--out", str(tmp_path / "run"),
                        "--iterations", "12",
                        "--set", "val_every=6", "--set", "val_episodes=10", "--quiet", "--seed",
                        "3")
    assert rc == 0, err
    assert "trained 12 iterations" in out
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"best.pt", "config.yaml", "last.pt",
                                                              "metrics.jsonl"}
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["iteration"] == 12 and ckpt["config"]["seed"] == 3


def test_checkpoint_steps_setting_trains_to_the_same_weights(tmp_path, capsys, no_data):
    weights = []
    for extra in ([], ["--set", "learner.checkpoint_steps=2"]):
        run = tmp_path / f"run{len(weights)}"
        rc, _, err = _run(capsys, "train", "sinusoid-maml", "--out", str(run), "--iterations", "3",
                          "--quiet",
                          "--set", "learner.task_batching=loop", "--set", "learner.inner_steps=3",
                          *extra)
        assert rc == 0, err
        weights.append(load_checkpoint(run / "last.pt"))
    assert weights[1]["config"]["learner"]["checkpoint_steps"] == 2
    assert weights[0]["config"]["learner"]["checkpoint_steps"] == 0
    a, b = (w["learner"] for w in weights)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)


def test_list_presets(capsys):
    rc, out, _ = _run(capsys, "train", "--list-presets")
    assert rc == 0 and "omniglot-5w1s-maml" in out.split() and "sinusoid-maml" in out.split()


@pytest.mark.parametrize("argv, message", [
    (["omniglot-5w1s-mam"],
     "unknown preset or config file 'omniglot-5w1s-mam': did you mean 'omniglot-5w1s-maml'?"),
    (["sinusoid-maml", "--set", "learner.inner_lrr=1"], "did you mean 'learner.inner_lr'?"),
    (["sinusoid-maml", "--set", "meta_batch=big"], "meta_batch must be int"),
    (["sinusoid-maml", "--set", "optim.lr=-1"], "optim.lr must be a finite number > 0"),
    (["sinusoid-maml", "--set", "optim.lr=inf"], "optim.lr must be a finite number > 0"),
    (["sinusoid-maml", "--set", "optim.clip_norm=nan"],
     "optim.clip_norm must be a finite number > 0 or null"),
    (["sinusoid-maml", "--seed", str(2**70)],
     f"seed must be an integer in [0, 2**63), got {2**70}: pass e.g."),
    (["sinusoid-maml", "--device", "tpu"], "device 'tpu' is unknown"),
])
def test_bad_input_one_line(tmp_path, capsys, no_data, argv, message):
    rc, out, err = _run(capsys, "train", *argv, "--out", str(tmp_path / "run"), "--quiet")
    assert rc == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_missing_data_names_prepare_command(tmp_path, capsys, no_data):
    rc, _, err = _run(capsys, "train", "omniglot-5w1s-maml", "--out", str(tmp_path / "run"),
                      "--quiet")
    assert rc == 2 and err.count("\n") == 1
    assert "fewshot prepare omniglot" in err
    assert not (tmp_path / "run").exists()


def test_unwritable_out_and_foreign_checkpoint(tmp_path, capsys, no_data):
    (tmp_path / "file").write_text("x")
    rc, _, err = _run(capsys, "train", "sinusoid-maml", "--out", str(tmp_path / "file" / "run"),
                      "--iterations", "2",
                      "--quiet")
    assert rc == 2 and "is a file, not a folder; choose another --out" in err and err.count(
        "\n") == 1

    run = tmp_path / "run"
    assert _run(capsys, "train", "sinusoid-maml", "--out", str(run), "--iterations", "2",
                "--quiet")[0] == 0
    files = {p.name: p.read_bytes() for p in run.iterdir()}
    rc, _, err = _run(capsys, "train", "sinusoid-maml", "--out", str(run), "--iterations", "4",
                      "--quiet",
                      "--set", "learner.name=fomaml")
    assert rc == 2 and "written by learner 'maml', not 'fomaml'" in err and err.count("\n") == 1
    rc, _, err = _run(capsys, "train", "sinusoid-maml", "--out", str(run), "--iterations", "4",
                      "--quiet",
                      "--set", "model.hidden_sizes=[20,20]")
    assert rc == 2 and "backbone 'mlp(hidden=[40, 40])', not 'mlp(hidden=[20, 20])'" in err
    # corrupt the checkpoint: resume refuses with one line, and touches nothing
    raw = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(raw[: len(raw) - 10])
    files["last.pt"] = (run / "last.pt").read_bytes()
    rc, _, err = _run(capsys, "train", "sinusoid-maml", "--out", str(run), "--iterations", "4",
                      "--quiet")
    assert rc == 2 and "corrupted or truncated" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files


def test_training_on_a_damaged_store_is_refused(omniglot_root, tmp_path, capsys):
    """Issue 14: a store with image bytes flipped used to train silently; its checksum now refuses
    it."""
    from tests.episodes.test_omniglot import _damaged_copy

    _damaged_copy(omniglot_root, tmp_path)
    rc, out, err = _run(capsys, "train", "omniglot-5w1s-maml", "--out", str(tmp_path / "run"),
                        "--iterations", "2",
                        "--set", f"data.root={tmp_path / 'root'}", "--quiet", "--device", "cpu")
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("error: store ") and "entry 'background' fails its sha256 check" in err
    assert "--force` to rebuild it" in err

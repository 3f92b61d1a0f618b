"""Distilled training sets as shipped models (fewshot.pretrained.distilled): `fewshot pretrained
publish` of a distillation run, listed and verified like any model, and `fewshot eval NAME`
re-measuring the manifest's number exactly (the same networks from the same seed)."""
import dataclasses
import json

import pytest
import torch
from PIL import Image

import fewshot.pretrained as pt
from fewshot.bilevel.distillation import train_on_distilled
from fewshot.cli import main
from fewshot.config.distill import get_distill_preset
from fewshot.errors import CheckpointError
from fewshot.functional import call
from fewshot.pretrained.distilled import choose_distilled_state, publish_distilled
from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.distill import (
    Distillation,
    SeededDraws,
    distill,
    real_data,
    trained_network_accuracies,
)


@pytest.fixture(scope="module")
def published(mnist_root, tmp_path_factory):
    """A 2-iteration random-initialisation run, published as ``tiny-distill`` (3 test networks)."""
    root = tmp_path_factory.mktemp("distilled")
    run, dest = root / "run", root / "models"
    assert main(["distill", "mnist-distill-100-random", "--out", str(run), "--root",
                 str(mnist_root), "--set", "iterations=2", "--set", "batch_size=32", "--set",
                 "steps=2", "--set", "eval_inits=3", "--quiet"]) == 0
    assert main(["pretrained", "publish", str(run), "tiny-distill", "--dest", str(dest)]) == 0
    return dest


def test_a_published_distillation_is_listed_verified_and_re_measured(published, mnist_root,
                                                                     monkeypatch, capsys):
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    monkeypatch.setenv("FEWSHOT_PRETRAINED_PATH", str(published))
    monkeypatch.setenv("FEWSHOT_DATA", str(mnist_root))
    capsys.readouterr()
    manifest = pt.show("tiny-distill")
    assert manifest["kind"] == "distilled-data" and manifest["images"] == 20
    assert manifest["eval_inits"] == 3 and manifest["config"]["data_root"] is None
    # two iterations: no validation yet, so no best state to choose and no curve
    assert manifest["selection"] is None and manifest["validation_curve"] is None
    row = pt.distilled_table(["tiny-distill"]).splitlines()[-1]
    assert row.startswith("| tiny-distill | 20 mnist | hard | random (fresh per network) | "
                          "per step | ")
    assert "| 3 | 2 |" in row
    assert main(["pretrained", "list"]) == 0
    assert "tiny-distill\tdistilled-data\t20 mnist images" in capsys.readouterr().out
    assert main(["eval", "tiny-distill", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["mean"], report["ci95"], report["inits"]) == (manifest["mean"],
                                                                  manifest["ci95"], 3)
    assert main(["eval", "tiny-distill", "--json", "--inits", "2", "--seed", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["inits"] == 2
    assert main(["eval", "tiny-distill", "--json", "--inits", "1", "--split", "train"]) == 0
    report = json.loads(capsys.readouterr().out)
    run, cfg, _ = pt.load_distilled("tiny-distill")
    x, y = real_data(cfg, "train")
    init = SeededDraws(0).network_init(run.network)
    with torch.no_grad():
        logits = call(run.network, train_on_distilled(run.network, run.data, init), {}, x)
    assert len(x) == 60000 and report["split"] == "train"
    assert report["mean"] == float((logits.argmax(-1) == y).float().mean())
    assert main(["eval", "tiny-distill", "--split", "val"]) == 2
    assert "--split for distilled data is train or test, got 'val'" in capsys.readouterr().err
    with Image.open(published / "tiny-distill" / "images.png") as grid:
        assert grid.size == (2 * (10 * 30 - 2), 2 * (2 * 30 - 2))  # 2 steps of 10 images, x2
    with pytest.raises(CheckpointError, match="is a distilled-data, not a meta-initialization: "
                                              "load it with fewshot.pretrained.load_distilled"):
        pt.load("tiny-distill")
    assert main(["eval", "tiny-distill", "--episodes", "5"]) == 2
    assert "--episodes applies to meta-initializations" in capsys.readouterr().err


def test_the_best_state_is_published_only_when_it_beats_the_last_beyond_noise(
        mnist_root, tmp_path, one_thread):
    cfg = dataclasses.replace(get_distill_preset("mnist-distill-10"), iterations=20,
                              batch_size=256, lr=0.05, val_every=5, val_images=2000,
                              checkpoint_every=5, data_root=str(mnist_root))
    distill(cfg, tmp_path / "run", quiet=True)
    trained = Distillation(cfg)
    trained.load_state_dict(load_checkpoint(tmp_path / "run" / "last.pt")["learner"])
    noise = Distillation(cfg)  # the images the run started from
    # trained data beats its starting noise on the 60,000 training images, far beyond noise
    chosen = choose_distilled_state(noise, trained, cfg, last_iteration=20, best_iteration=10)
    assert chosen["chosen"] == "best" and chosen["images"] == 60000 and chosen["networks"] == 1
    assert chosen["best_mean"] == pytest.approx(
        trained_network_accuracies(trained, cfg, split="train")[0], abs=1e-7)  # float32 mean
    assert chosen["difference"] == pytest.approx(chosen["best_mean"] - chosen["last_mean"])
    assert chosen["difference"] > chosen["difference_ci95"] > 0
    assert "iteration 10 beats the last state (20)" in chosen["reason"]
    worse = choose_distilled_state(trained, noise, cfg, last_iteration=20, best_iteration=10)
    assert worse["chosen"] == "last" and worse["difference"] < 0
    assert "does not beat" in worse["reason"]
    same = choose_distilled_state(trained, trained, cfg, last_iteration=20, best_iteration=20)
    assert same["chosen"] == "last" and "is the last state" in same["reason"]
    # publishing records the choice, the curve and the weights of the chosen state
    manifest = publish_distilled(tmp_path / "run", "chosen", dest=tmp_path / "models")
    selection = manifest["selection"]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert selection["best_iteration"] == best["iteration"]
    assert manifest["checkpoint_iteration"] == (best["iteration"] if selection["chosen"] == "best"
                                                else 20)
    assert manifest["trained_iterations"] == 20
    assert [p["iteration"] for p in manifest["validation_curve"]] == [5, 10, 15, 20]

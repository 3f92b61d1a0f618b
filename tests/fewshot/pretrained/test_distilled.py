"""Distilled training sets as shipped models (fewshot.pretrained.distilled): `fewshot pretrained
publish` of a distillation run, listed and verified like any model, and `fewshot eval NAME`
re-measuring the manifest's number exactly (the same networks from the same seed)."""
import json

import pytest
import torch
from PIL import Image

import fewshot.pretrained as pt
from fewshot.bilevel.distillation import train_on_distilled
from fewshot.cli import main
from fewshot.errors import CheckpointError
from fewshot.functional import call
from fewshot.training.distill import SeededDraws, real_data


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

"""Meta-SGD, MT-net and T-net through the CLI: train (config saved), resume bit-identical, eval."""
from __future__ import annotations

import json

import pytest
import torch

from fewshot.cli import main
from fewshot.config import load_config
from fewshot.training.checkpoint import load_checkpoint


@pytest.mark.parametrize("name, extra", [("metasgd", ["learner.alpha_init=[0.01, 0.05]"]),
                                         ("mtnet", ["learner.inner_lr=0.01"]),
                                         ("tnet", ["learner.inner_lr=0.01"])])
def test_train_resume_and_eval_through_the_cli(tmp_path, capsys, name, extra):
    sets = [f"learner.name={name}", *extra, "meta_batch=4", "val_every=4", "val_episodes=10",
            "checkpoint_every=4"]
    common = ["--quiet", "--device", "cpu"] + [a for s in sets for a in ("--set", s)]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["train", "sinusoid-maml", "--iterations", "8", "--out", str(full), *common]) == 0
    assert main(["train", "sinusoid-maml", "--iterations", "4", "--out", str(part), *common]) == 0
    assert main(
        ["train", "sinusoid-maml", "--iterations", "8", "--out", str(part), "--resume",
         *common]) == 0
    a, b = load_checkpoint(full / "last.pt")["learner"], load_checkpoint(part / "last.pt")[
        "learner"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    cfg = load_config(full / "config.yaml")
    assert cfg.learner.name == name
    if name == "metasgd":
        assert cfg.learner.config.alpha_init == (0.01, 0.05) and "rule.alphas.0" in a
    else:
        assert cfg.learner.config.mask == (name == "mtnet") and "model.net.0.transform" in a
        assert ("noise_rng" in a) == (name == "mtnet")
    reports = []
    for run in (full, part):
        capsys.readouterr()
        assert main(["eval", str(run), "--episodes", "10", "--device", "cpu", "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    report = reports[0]
    assert report["metric"] == "mse" and report["episodes"] == 10
    # the resumed run evaluates to the very same numbers; the 10 episodes' MSEs are finite and
    # differ
    assert reports[1] == report
    assert 0 < report["mean"] < float("inf") and 0 < report["std"] < float("inf")

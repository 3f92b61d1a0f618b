"""fewshot.training.distill: a distillation run on real MNIST learns (networks trained on its ten
images beat networks trained on its starting noise), resumes bit-identically, and refuses to resume
with other settings, and stops on a signal with the iteration saved."""
import dataclasses
import json
import os
import signal

import pytest
import torch

from fewshot.bilevel.distillation import distillation_loss
from fewshot.config.distill import get_distill_preset
from fewshot.errors import ConfigError
from fewshot.training import distill as training_distill
from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.distill import Distillation, distill, trained_network_accuracies
from fewshot.training.interrupt import TrainingInterrupted


def _cfg(mnist_root, **kw):
    base = dict(iterations=6, batch_size=64, checkpoint_every=3, log_every=3, val_every=2,
                val_images=500, data_root=str(mnist_root))
    return dataclasses.replace(get_distill_preset("mnist-distill-10"), **{**base, **kw})


def test_distillation_learns_what_its_starting_noise_does_not(mnist_root, tmp_path, one_thread):
    cfg = _cfg(mnist_root, iterations=60, batch_size=256, lr=0.05)
    # the same initialisation, trained on the images the run starts from
    before = trained_network_accuracies(Distillation(cfg), cfg)[0]
    result = distill(cfg, tmp_path, quiet=True)
    assert result.test_inits == 1 and result.test_mean > before + 0.2, (before, result)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["test_mean"] == result.test_mean
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in logged if r["kind"] == "train"]
    assert losses[-1]["iteration"] == 60 and losses[-1]["loss"] < losses[0]["loss"]
    # the validation curve on training images rises with it
    curve = [r for r in logged if r["kind"] == "val"]
    assert curve[-1]["iteration"] == 60 and curve[-1]["accuracy"] > curve[0]["accuracy"] + 0.2


def test_a_resumed_run_is_the_uninterrupted_one(mnist_root, tmp_path, one_thread):
    straight = distill(_cfg(mnist_root), tmp_path / "a", quiet=True)
    distill(_cfg(mnist_root, iterations=3), tmp_path / "b", quiet=True)
    resumed = distill(_cfg(mnist_root), tmp_path / "b", quiet=True)
    assert resumed.resumed_from == 3 and resumed.test_mean == straight.test_mean
    for name in ("last.pt", "best.pt"):
        a, b = (load_checkpoint(tmp_path / d / name) for d in ("a", "b"))
        assert a["iteration"] == b["iteration"] and a["extra"] == b["extra"]
        assert all(torch.equal(a["learner"][k], b["learner"][k]) for k in a["learner"])
        assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    # the metrics of the first sitting are kept, and the whole log is the uninterrupted run's
    assert (tmp_path / "b" / "metrics.jsonl").read_text() == (
        tmp_path / "a" / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="other settings \\(lr: 0.01 there, 0.02 here\\)"):
        distill(_cfg(mnist_root, lr=0.02), tmp_path / "b", quiet=True)


def test_random_initialisations_are_drawn_per_network(mnist_root, one_thread):
    cfg = _cfg(mnist_root, init="random", steps=2, eval_inits=3)
    run = Distillation(cfg)
    accuracies = trained_network_accuracies(run, cfg, seed=0)
    assert len(accuracies) == 3 and len(set(accuracies)) == 3  # three different networks
    # the same seed, the same networks
    assert trained_network_accuracies(run, cfg, seed=0) == accuracies


def test_a_signal_stops_after_the_iteration_and_saves_it(mnist_root, tmp_path, one_thread,
                                                        monkeypatch):
    straight = distill(_cfg(mnist_root), tmp_path / "a", quiet=True)
    calls = []

    def loss_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # during iteration 2: the run stops after it, saving iteration 2
            os.kill(os.getpid(), signal.SIGTERM)
        return distillation_loss(*args, **kwargs)

    monkeypatch.setattr(training_distill, "distillation_loss", loss_then_signal)
    with pytest.raises(TrainingInterrupted) as stop:
        distill(_cfg(mnist_root), tmp_path / "b", quiet=True)
    assert stop.value.iteration == 2 and stop.value.exit_status == 143
    assert load_checkpoint(tmp_path / "b" / "last.pt")["iteration"] == 2
    monkeypatch.undo()
    resumed = distill(_cfg(mnist_root), tmp_path / "b", quiet=True)
    assert resumed.resumed_from == 2 and resumed.test_mean == straight.test_mean


def test_per_layer_step_sizes_start_from_the_same_draws(mnist_root, tmp_path, one_thread):
    cfg = _cfg(mnist_root, per_layer_step_sizes=True)
    shared_cfg = _cfg(mnist_root, per_layer_step_sizes=False)
    shared, per_layer = Distillation(shared_cfg), Distillation(cfg)
    assert torch.equal(shared.data.images, per_layer.data.images)  # a paired comparison
    for name, p in shared.network.named_parameters():
        assert torch.equal(p, dict(per_layer.network.named_parameters())[name])
    distill(cfg, tmp_path, quiet=True)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rates = torch.tensor([r for r in logged if r["kind"] == "train"][-1]["step_sizes"])
    assert rates.shape == (3, 10) and len(set(rates.flatten().tolist())) > 1
    with pytest.raises(ConfigError, match="per_layer_step_sizes: True there, False here"):
        distill(shared_cfg, tmp_path, quiet=True)


def test_validation_keeps_the_best_state_and_changes_nothing_else(mnist_root, tmp_path,
                                                                   one_thread):
    cfg = _cfg(mnist_root, iterations=8, val_every=2)
    distill(cfg, tmp_path / "validated", quiet=True)
    distill(_cfg(mnist_root, iterations=8, val_every=1000), tmp_path / "plain", quiet=True)
    validated, plain = (load_checkpoint(tmp_path / d / "last.pt") for d in ("validated", "plain"))
    # the validation draws are apart from the training ones: the same run either way
    assert all(torch.equal(validated["learner"][k], plain["learner"][k])
               for k in plain["learner"])
    assert not (tmp_path / "plain" / "best.pt").exists()
    logged = [json.loads(line) for line in
              (tmp_path / "validated" / "metrics.jsonl").read_text().splitlines()]
    curve = [r for r in logged if r["kind"] == "val"]
    assert [r["iteration"] for r in curve] == [2, 4, 6, 8]
    assert all(r["images"] == 500 and r["networks"] == 1 for r in curve)
    top = max(curve, key=lambda r: r["accuracy"])
    best = load_checkpoint(tmp_path / "validated" / "best.pt")
    assert best["iteration"] == top["iteration"]
    assert best["extra"] == {"best_accuracy": top["accuracy"], "best_iteration": top["iteration"]}
    assert validated["extra"] == best["extra"]
    # the logged accuracy is that of the best state's data on the run's validation images
    run = Distillation(cfg)
    run.load_state_dict(best["learner"])
    x, y = training_distill.real_data(cfg, "train")
    val_x, val_y = training_distill.validation_images(cfg, x, y)
    assert len(val_x) == 500
    assert training_distill.validation_accuracies(run, cfg, val_x, val_y) == [top["accuracy"]]

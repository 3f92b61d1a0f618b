"""Pretrained registry: publish -> list/show/load, sha256 verification, user directories."""
from __future__ import annotations

import json

import pytest
import torch

import fewshot.pretrained as pt
from episodes.files import hardware, sha256_file
from fewshot.config import apply_overrides, get_preset
from fewshot.errors import CheckpointError
from fewshot.reporting import publish, results_table
from fewshot.reporting.forecast import forecast_curve
from fewshot.reporting.publish import budget_text, unfinished_note
from fewshot.training.checkpoint import load_checkpoint
from fewshot.training.loop import train


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("pt")
    cfg = apply_overrides(get_preset("sinusoid-maml"),
                          ["iterations=20", "val_every=10", "val_episodes=10",
                                                        "device=cpu"])
    train(cfg, root / "run", quiet=True, tensorboard=False)
    manifest = publish(root / "run", "my-sine", dest=root / "models", episodes=50)
    return root, manifest


def test_publish_writes_weights_and_manifest(published):
    root, manifest = published
    d = root / "models" / "my-sine"
    # the weights, and the run's training state (last.pt = best.pt here: one file) with its metrics
    # log
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", "metrics.jsonl",
                                                   "model.safetensors", "state.pt"]
    for item in (manifest["training_state"]["last"], manifest["training_state"]["metrics"]):
        assert item["sha256"] == sha256_file(d / item["file"])
    on_disk = json.loads((d / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["sha256"] == sha256_file(d / "model.safetensors")
    assert manifest["trained_iterations"] == 20
    # test steps chosen on the validation episodes (1..10), and the test number measured with them
    by_steps = {int(k): v for k, v in manifest["val_by_steps"].items()}
    assert sorted(by_steps) == list(range(1, 11)) and manifest["val_episodes"] == 10
    # MSE: lowest wins
    assert manifest["test_steps"] == min(by_steps, key=lambda s: (by_steps[s], s))
    # no images
    assert manifest["eval_steps"] == manifest["test_steps"] and "preprocessing" not in manifest
    for key in ("learner", "backbone", "preset", "dataset", "split", "train_iterations", "seed",
                "hardware",
                "mean", "ci95", "episodes", "metric"):
        assert key in manifest
    assert manifest["metric"] == "mse" and manifest["episodes"] == 50 and manifest[
        "preset"] == "sinusoid-maml"
    assert "instead of the preset's 70000" in manifest["notes"]
    # no batch norm: one protocol, so no transductive / non-transductive pair
    assert manifest["transductive"] is None and manifest["non_transductive"] is None
    # what the training cost, from the clock last.pt carries (the whole run, not up to best.pt)
    clock = load_checkpoint(root / "run" / "last.pt")["clock"]
    assert [(s["from_iteration"], s["to_iteration"]) for s in clock["sessions"]] == [(0, 20)]
    assert 0 < clock["cpu_seconds"] and 0 < clock["wall_seconds"]
    assert manifest["training_time"] == {
        "wall_minutes": round(clock["wall_seconds"] / 60, 1),
        "cpu_minutes": round(clock["cpu_seconds"] / 60, 1),
        "sessions": 1, "processes": 1, "threads": torch.get_num_threads(), "device": "cpu",
        "hardware": hardware()}


def test_register_list_show_load(published, monkeypatch):
    root, manifest = published
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    assert "my-sine" not in pt.list()
    monkeypatch.setenv("FEWSHOT_PRETRAINED_PATH", str(root / "models"))
    assert "my-sine" in pt.list()
    monkeypatch.delenv("FEWSHOT_PRETRAINED_PATH")
    pt.register_dir(root / "models")
    assert "my-sine" in pt.list() and pt.show("my-sine")["mean"] == manifest["mean"]
    learner = pt.load("my-sine")
    best = load_checkpoint(root / "run" / "best.pt")["learner"]
    for k, v in learner.state_dict().items():
        assert torch.equal(v, best[k]), k
    assert not learner.training
    with pytest.raises(CheckpointError,
                       match="unknown pretrained model 'my-sin': did you mean 'my-sine'"):
        pt.load("my-sin")


def test_sha_mismatch_refused(published, tmp_path, monkeypatch):
    import shutil

    root, _ = published
    shutil.copytree(root / "models" / "my-sine", tmp_path / "tampered")
    w = tmp_path / "tampered" / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0x01
    w.write_bytes(bytes(raw))
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    pt.register_dir(tmp_path / "tampered")  # a single model directory
    with pytest.raises(CheckpointError, match="fail the sha256 check"):
        pt.load("my-sine")


def test_table_lists_ours_next_to_paper(published, monkeypatch):
    root, manifest = published
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    pt.register_dir(root / "models")
    # the README's: split, ours, transductive, paper, manifest
    slim = results_table(["my-sine"]).splitlines()[2]
    assert slim.startswith(
        "| my-sine | maml | sinusoid | MSE ") and f"{manifest['mean']:.3f}" in slim
    assert slim.endswith("| MSE 0.67 / 0.38 / 0.35 after 1 / 5 / 10 steps "
                         "| [manifest](pretrained/my-sine/manifest.json) |")
    # docs/results.md's, with the training history
    row = results_table(["my-sine"], full=True).splitlines()[2]
    assert row.startswith("| my-sine | maml | sinusoid | MSE ") and f"{manifest['mean']:.3f}" in row
    assert "| 20 / 70000 | no |" in row  # iterations, and not the preset's full protocol
    assert "0.67 / 0.38 / 0.35" in row  # the MAML paper's sinusoid numbers
    t = manifest["training_time"]
    assert (
        f"| run clock: {t['wall_minutes']:g} wall-min, {t['cpu_minutes']:g} CPU-min "
        f"({t['threads']} thread" in row)
    both = budget_text({**manifest, "training_budget": "first training: 31 CPU-minutes"})
    assert both.startswith("first training: 31 CPU-minutes; run clock: ") and budget_text({}) == "–"


def test_shipped_models_verify():
    for name in pt.list():
        m = pt.verify(name)
        assert m["name"] == name
        # learned optimizers: tests/fewshot/l2o/test_weights.py
        if m.kind == "meta-initialization":
            assert m["episodes"] == 600
        elif m.kind == "distilled-data":  # tests/fewshot/pretrained/test_shipped_distilled.py
            assert m["split"] == "test" and m["eval_inits"] >= 1


# ----------------------------------------------------------------------------- non-transductive use
# (issue 15)
IMAGE_MODELS = ["omniglot-20w1s-maml", "omniglot-5w1s-lstm-meta", "omniglot-5w1s-maml",
                "omniglot-5w1s-metasgd",
                "omniglot-5w1s-mtnet", "omniglot-5w5s-maml"]


def _ink(gen: torch.Generator, n: int) -> torch.Tensor:
    """``n`` random 28x28 stroke-like images in [0, 1] (the invariance holds for any input)."""
    return (torch.rand(n, 1, 28, 28, generator=gen) < 0.15).float()


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_shipped_image_model_predicts_each_query_alone_as_in_a_batch(name):
    """In eval mode a query's prediction must not depend on the other queries: one image at a time,
    batches of 15 and all 15 queries per class together give the same outputs."""
    learner = pt.load(name)
    m = pt.show(name)
    assert not learner.training and learner.config.bn_mode != "transductive"
    ways, shots = m["ways"], m["shots"]
    gen = torch.Generator().manual_seed(0)
    support_x = _ink(gen, ways * shots)
    params = learner.adapt(support_x, torch.arange(ways).repeat_interleave(shots))
    x = _ink(gen, 15 * ways)
    with torch.no_grad():  # (support_x: the "support" mode's statistics; the other modes ignore it)
        together = learner.predict(x, params, support_x=support_x)
        alone = torch.cat(
            [learner.predict(x[i:i + 1], params, support_x=support_x) for i in range(len(x))])
        fifteen = torch.cat(
            [learner.predict(x[i:i + 15], params, support_x=support_x)
             for i in range(0, len(x), 15)])
    torch.testing.assert_close(alone, together, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fifteen, together, rtol=1e-4, atol=1e-5)
    assert torch.equal(alone.argmax(-1), together.argmax(-1))
    # the manifest records both protocols; its headline number is the non-transductive one
    assert m["non_transductive"]["mean"] == m["mean"] and m["non_transductive"]["bn_mode"] == m[
        "bn_mode"]
    assert m["transductive"]["bn_mode"] == "transductive" and 0.0 < m["transductive"]["mean"] <= 1.0


# ----------------------------------------------------------------------------- broken manifests
# (issue 14)
FIX = "re-publish the model (or remove its folder from the search path)"


def _without(key):
    return lambda m: json.dumps({k: v for k, v in m.items() if k != key}).encode()


BROKEN = {
    "not-utf8": (lambda m: json.dumps(m).encode().replace(b'"name"', b'"n\xffme"', 1),
                 "is not UTF-8 text (bad byte at offset 3): " + FIX),
    "not-json": (lambda m: b'{"name": "broken",',
                 "is not valid JSON (line 1, column 19: Expecting property name "
                 "enclosed in double quotes): " + FIX),
    "name-is-a-list": (lambda m: json.dumps({**m, "name": ["broken"]}).encode(),
                       ": name must be str or None, got ['broken'] (list): " + FIX),
    "no-config": (_without("config"),
                  ": lacks 'config' (the training config, a JSON object): " + FIX),
    "no-mean": (_without("mean"),
                ": lacks 'mean' (the measured accuracy or MSE, a number): " + FIX),
    "weights-not-a-string": (lambda m: json.dumps({**m, "weights": 5}).encode(),
                             ": weights must be str, got 5 (int): " + FIX),
    "weights-outside": (
        lambda m: json.dumps({**m, "weights": "../my-sine/model.safetensors"}).encode(),
        ": 'weights' must be a file name inside the model folder, "
        "got '../my-sine/model.safetensors': " + FIX),
}


@pytest.fixture
def collection(published, tmp_path, monkeypatch):
    """A registered collection: the good 'my-sine' next to a folder 'broken' (filled in by the
    test)."""
    import shutil

    root, _ = published
    shutil.copytree(root / "models" / "my-sine", tmp_path / "models" / "my-sine")
    shutil.copytree(root / "models" / "my-sine", tmp_path / "models" / "broken")
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    monkeypatch.setattr(pt.registry, "_WARNED", set())
    pt.register_dir(tmp_path / "models")
    return tmp_path / "models"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_manifest_is_one_line_and_does_not_hide_other_models(collection, capsys, case):
    from fewshot.cli import main

    make, tail = BROKEN[case]
    manifest = json.loads((collection / "broken" / "manifest.json").read_text())
    path = collection / "broken" / "manifest.json"
    path.write_bytes(make({**manifest, "name": "broken"}))
    expected = f"pretrained manifest {path} {tail}".replace(f"{path} :", f"{path}:")
    with pytest.warns(pt.ManifestWarning,
                      match="skipping the pretrained model in .*broken: ") as record:
        with pytest.raises(CheckpointError) as info:
            pt.load("broken")
    assert str(info.value) == expected
    assert [str(w.message)
            for w in record] == [
                f"skipping the pretrained model in {collection / 'broken'}: {expected}"]
    assert main(["eval", "broken", "--episodes", "5"]) == 2  # warned once already in this process
    err = capsys.readouterr().err
    assert err == f"error: {expected}\n"
    # The good, unrelated model is still listed and evaluated.
    assert "my-sine" in pt.list() and "broken" not in pt.list()
    assert main(["eval", "my-sine", "--episodes", "5", "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 5


def test_broken_manifest_warns_once_naming_the_file(collection):
    (collection / "broken" / "manifest.json").write_bytes(b"\xff\xfe")
    with pytest.warns(pt.ManifestWarning) as record:
        assert "my-sine" in pt.list()
        pt.locate("my-sine")
        pt.load("my-sine")
    assert len(record) == 1 and str(collection / "broken" / "manifest.json") in str(
        record[0].message)


# ----------------------------------------------------------------------------- preprocessing, test
# steps (issue 15)
def _copy_model(src: str, dest, edit):
    """A copy of shipped model ``src`` in ``dest/<src>-copy`` with ``edit(manifest)`` applied (the
    sha256 covers only the weights, so the copy still verifies)."""
    import shutil

    d = dest / f"{src}-copy"
    shutil.copytree(pt.locate(src), d)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["name"] = d.name
    edit(manifest)
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d.name


def test_preprocessing_from_the_manifest_or_the_dataset(tmp_path, monkeypatch):
    from episodes import Preprocessing, dataset_preprocessing

    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    old = _copy_model("omniglot-5w1s-maml", tmp_path, lambda m: m.pop("preprocessing", None))
    mine = _copy_model("omniglot-5w5s-maml", tmp_path, lambda m: m.update(
        preprocessing={"size": 28, "channels": 1, "invert": False, "interpolation": "bicubic",
                       "scale": 255.0}))
    bad = _copy_model("omniglot-20w1s-maml", tmp_path,
                      lambda m: m.update(preprocessing={"channels": 2}))
    pt.register_dir(tmp_path)
    assert pt.preprocessing(old) == dataset_preprocessing("omniglot", 28) == \
        Preprocessing(size=28, channels=1, invert=True, interpolation="lanczos")
    assert pt.preprocessing(mine) == Preprocessing(28, 1, False, "bicubic")
    assert pt.load(mine).preprocessing == pt.preprocessing(mine)
    with pytest.raises(CheckpointError,
                       match="manifest of '.*': preprocessing: channels must be 1"):
        pt.preprocessing(bad)
    with pytest.raises(CheckpointError, match="'sinusoid-maml' takes no images"):
        pt.preprocessing("sinusoid-maml")
    assert pt.load("sinusoid-maml").preprocessing is None


def test_test_steps_become_the_default_eval_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    chosen = _copy_model("omniglot-5w1s-maml", tmp_path, lambda m: m.update(test_steps=7))
    wrong = _copy_model("omniglot-5w5s-maml", tmp_path, lambda m: m.update(test_steps=0))
    pt.register_dir(tmp_path)
    learner, cfg, _ = pt.load_with_config(chosen)
    assert learner.config.eval_steps == 7 and cfg.learner.config.eval_steps == 7
    assert learner._default_steps(None) == 7  # eval mode: what evaluate/adapt use without steps=
    with pytest.raises(CheckpointError, match="'test_steps' must be a positive integer, got 0"):
        pt.load(wrong)


def _hand_sgd_query_mse(model, task, *, lr, steps):
    """``{t: query MSE after t plain SGD steps on the support MSE}`` for t = 1..steps, unrolled by
    hand (``functional_call`` and ``autograd.grad`` only: no fewshot code)."""
    p = {n: q.detach() for n, q in model.named_parameters()}
    out = {}
    for t in range(1, steps + 1):
        p = {n: q.requires_grad_() for n, q in p.items()}
        loss = torch.nn.functional.mse_loss(torch.func.functional_call(model, p, (task.support_x,)),
                                            task.support_y)
        grads = torch.autograd.grad(loss, list(p.values()))
        p = {n: (q - lr * g).detach() for (n, q), g in zip(p.items(), grads)}
        out[t] = torch.nn.functional.mse_loss(torch.func.functional_call(model, p, (task.query_x,)),
                                              task.query_y).item()
    return out


def test_step_choice_is_the_validation_oracle_and_loading_uses_it(published, monkeypatch):
    """Recompute two step counts' validation MSE by hand and load the model with its chosen
    steps."""
    from fewshot.training.build import build_fixed_set

    root, manifest = published
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    pt.register_dir(root / "models")
    learner, cfg, _ = pt.load_with_config("my-sine")
    assert learner.config.eval_steps == manifest["test_steps"]
    # plain SGD
    assert cfg.learner.config.inner_lr == 0.01 and not cfg.learner.config.learn_inner_lr
    fixed = build_fixed_set(cfg, "val", count=10)
    tasks = [batch.task(i) for batch in fixed.batches(5) for i in range(len(batch))]
    assert len(tasks) == 10
    per_task = [_hand_sgd_query_mse(learner.model, t, lr=0.01, steps=7) for t in tasks]
    for steps in (1, 7):
        hand = sum(mse[steps] for mse in per_task) / len(per_task)
        assert hand == pytest.approx(manifest["val_by_steps"][str(steps)], rel=1e-5)


@pytest.mark.parametrize("metric, means, chosen", [
    # highest accuracy; the tie goes to fewer steps
    ("accuracy", {1: 0.5, 2: 0.7, 3: 0.7, 4: 0.6}, 2),
    ("mse", {1: 0.5, 2: 0.3, 3: 0.2, 4: 0.2}, 3),       # lowest MSE; the tie goes to fewer steps
    ("mse", {1: 0.1, 2: 0.3, 3: 0.2, 4: 0.2}, 1)])
def test_choose_test_steps_rule_on_scripted_validation_means(monkeypatch, metric, means, chosen):
    """The choice rule on a stub evaluation: each step count's validation mean is scripted, and the
    steps are all evaluated on the same episodes."""
    from types import SimpleNamespace

    from fewshot.reporting import steps as steps_mod
    from fewshot.scoring import Summary

    cfg = SimpleNamespace(
        learner=SimpleNamespace(config=SimpleNamespace(inner_steps=1, eval_steps=4)),
                          val_episodes=6, eval_batch=3)
    episodes = object()
    monkeypatch.setattr(steps_mod, "MAX_STEPS", 4)
    def fixed_set(c, split, count, device=None):
        return SimpleNamespace(batches=lambda b: (episodes, split, count, b))

    monkeypatch.setattr(steps_mod, "build_fixed_set", fixed_set)
    asked = []

    def stub(learner, batches, *, steps):
        asked.append((steps, batches))
        return metric, Summary(mean=means[steps], ci95=0.0, n=6, std=0.0)

    monkeypatch.setattr(steps_mod, "evaluate_learner", stub)
    best, by_steps = steps_mod.choose_test_steps(None, cfg)
    assert (best, by_steps) == (chosen, means)
    assert asked == [(s, (episodes, "val", 6, 3)) for s in (1, 2, 3, 4)]


def test_an_unfinished_run_publishes_what_remains_and_its_forecast(tmp_path, monkeypatch):
    cfg = apply_overrides(get_preset("sinusoid-maml"),
                          ["iterations=20", "val_every=5", "val_episodes=10", "device=cpu"])
    train(cfg, tmp_path / "run", quiet=True, tensorboard=False)
    # the run was meant to go on to 60 iterations and stopped at 20 (as a paused long run is)
    config = tmp_path / "run" / "config.yaml"
    text = config.read_text()
    assert "iterations: 20\n" in text
    config.write_text(text.replace("iterations: 20\n", "iterations: 60\n"))
    manifest = publish(tmp_path / "run", "sine-unfinished", dest=tmp_path / "models", episodes=20)
    assert manifest["trained_iterations"] == 20 and manifest["train_iterations"] == 60
    assert manifest["remaining_iterations"] == 40 and manifest["full_protocol"] is False
    curve = manifest["validation_curve"]
    assert [p["iteration"] for p in curve] == [5, 10, 15, 20]
    # the forecast is the power-law fit of the curve's later half, extrapolated to iteration 60
    assert manifest["forecast"] == forecast_curve(curve, 60, metric="mse")
    assert manifest["forecast"]["fitted_iterations"] == [10, 20]
    assert manifest["notes"].startswith(
        "Unfinished: 20 of the run's 60 iterations trained (40 remain; `fewshot train "
        "--from-pretrained sine-unfinished` continues it)")
    assert "forecasts MSE" not in manifest["notes"] and "validation mse at iteration 60" in (
        manifest["notes"])
    low, high = (f"{manifest['forecast'][k]:.3g}" for k in ("low", "high"))
    assert f"(95% prediction interval {low} to {high}, from the curve's noise alone)" in (
        manifest["notes"])
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    pt.register_dir(tmp_path / "models")
    row = results_table(["sine-unfinished"], full=True).splitlines()[2]
    assert "| 20 / 70000 (unfinished: 40 remain) | no |" in row
    # a finished run's manifest says nothing of the kind
    assert unfinished_note("sine", 60, 60, 60, None) == ""

import json

import pytest
import torch

import fewshot.pretrained as registry
from fewshot.errors import CheckpointError
from fewshot.l2o import LearnedOptimizer
from fewshot.pretrained import load_learned_optimizer, save_learned_optimizer


def test_save_load_round_trip_gives_the_same_updates(small_net, tmp_path):
    manifest = save_learned_optimizer(small_net.float(), tmp_path / "opt", name="my-opt",
                                      extra={"problem": "x"})
    assert manifest["kind"] == "learned-optimizer" and manifest["net"]["hidden"] == 8
    loaded = load_learned_optimizer(tmp_path / "opt")
    g = torch.randn(7)
    a, _ = small_net(g, small_net.initial_state(7))
    b, _ = loaded(g, loaded.initial_state(7))
    assert torch.equal(a, b)
    assert sorted(p.name for p in (tmp_path / "opt").iterdir()) == ["manifest.json",
                                                                    "model.safetensors"]


def test_a_saved_optimizer_is_a_pretrained_model_by_name(small_net, tmp_path, monkeypatch):
    save_learned_optimizer(small_net.float(), tmp_path / "opt", name="my-opt")
    monkeypatch.setenv(registry.ENV_VAR, str(tmp_path))
    assert "my-opt" in registry.list()
    p = torch.zeros(3, requires_grad=True)
    LearnedOptimizer([p], net=load_learned_optimizer("my-opt"))
    with pytest.raises(CheckpointError, match="is a learned-optimizer, not a meta-initialization"):
        registry.load("my-opt")


def test_tampered_weights_and_wrong_kind_are_refused(small_net, tmp_path):
    save_learned_optimizer(small_net.float(), tmp_path / "opt", name="my-opt")
    weights = tmp_path / "opt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="sha256"):
        load_learned_optimizer(tmp_path / "opt")
    with pytest.raises(CheckpointError, match="not a learned optimizer"):
        load_learned_optimizer(registry.locate("sinusoid-maml"))
    with pytest.raises(CheckpointError,
                       match="neither a pretrained learned-optimizer name nor a directory"):
        load_learned_optimizer(tmp_path)


def test_shipped_learned_optimizers_verify_and_record_their_protocol():
    for name in ("l2o-quadratic", "l2o-mnist"):
        manifest = registry.verify(name)
        assert manifest["kind"] == "learned-optimizer"
        assert manifest["meta_train"]["unroll"] == 20 and manifest["meta_train"]["steps"] == 100
        json.dumps(manifest.to_dict())
        load_learned_optimizer(name)

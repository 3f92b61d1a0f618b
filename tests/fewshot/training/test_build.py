"""Config -> objects: device resolution, seeded initialisation, identities, fixed evaluation
sets."""
from __future__ import annotations

import pytest
import torch

from fewshot.config import apply_overrides, get_preset
from fewshot.errors import ConfigError
from fewshot.training.build import (
    backbone_identity,
    build_fixed_set,
    build_learner_from_config,
    image_arrays,
    resolve_device,
)


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available: use --device cpu or auto"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_init_is_a_function_of_the_seed_and_leaves_global_rng_alone():
    cfg = get_preset("sinusoid-maml")
    state = torch.get_rng_state()
    a = build_learner_from_config(cfg).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    b = build_learner_from_config(cfg).state_dict()
    c = build_learner_from_config(apply_overrides(cfg, ["seed=1"])).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_backbone_identity_tracks_architecture():
    cfg = get_preset("omniglot-5w1s-maml")
    assert backbone_identity(cfg) == "conv4(hidden=64,pool=False,in=1,size=28)"
    assert backbone_identity(
        get_preset("mini-imagenet-5w1s-mamlpp")) == "conv4(hidden=48,pool=True,in=3,size=84)"


def test_regression_fixed_set_does_not_depend_on_batch_size():
    cfg = get_preset("sinusoid-maml")
    s = build_fixed_set(cfg, "test", count=10)
    xs_a = torch.cat([b.support_x for b in s.batches(3)])
    xs_b = torch.cat([b.support_x for b in s.batches(10)])
    assert torch.equal(xs_a, xs_b) and xs_a.shape == (10, 5, 1)
    val = build_fixed_set(cfg, "val", count=10)
    assert not torch.equal(next(val.batches(10)).support_x, xs_b)  # validation and test sets differ


def test_image_arrays_are_flat_unit_interval_with_class_labels(mnist_root):
    x, y = image_arrays("mnist", "test", mnist_root)
    assert x.shape == (10000, 784) and 0.0 <= float(x.min()) and float(x.max()) == 1.0
    # the published MNIST test-set class sizes: labels follow the store's class offsets
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

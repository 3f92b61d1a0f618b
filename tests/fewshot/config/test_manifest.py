"""The typed manifest: every shipped manifest reads and writes back unchanged, defaults live in one
place, keys it does not type are kept, and a wrong field is one line naming it."""
from __future__ import annotations

import json

import pytest

import fewshot.pretrained as pt
from fewshot.config.manifest import WEIGHTS, Manifest, manifest_of, read_manifest
from fewshot.errors import CheckpointError, ConfigError


def _shipped() -> list:
    return sorted(p for p in pt.package_dir().iterdir() if (p / "manifest.json").is_file())


def test_every_shipped_manifest_reads_and_writes_back_unchanged():
    assert len(_shipped()) >= 9
    for d in _shipped():
        raw = (d / "manifest.json").read_text()
        m = read_manifest(d)
        assert m.to_dict() == json.loads(raw) and list(m.to_dict()) == list(json.loads(raw)), d.name
        assert Manifest.from_json(json.loads(m.to_json())) == m


def test_defaults_of_fields_an_older_manifest_lacks():
    m = Manifest.from_json({"sha256": "ab", "config": {}, "mean": 0.5, "ci95": 0.01})
    assert (m.kind, m.weights, m.name, m.test_steps, m.training_state, m.preprocessing) == \
        ("meta-initialization", WEIGHTS, None, None, None, None)
    # the same defaults, dict-style
    assert m.get("kind") == "meta-initialization" and m.get("test_steps", 3) == 3
    assert "kind" not in m and m.to_dict() == {"sha256": "ab", "config": {}, "mean": 0.5,
                                               "ci95": 0.01}


def test_untyped_keys_are_kept_in_their_order():
    data = {"name": "l2o", "kind": "learned-optimizer", "net": {"hidden": 20}, "problem": "mnist",
            "seconds": 12.5, "sha256": "ab", "weights": "w.safetensors"}
    m = Manifest.from_json(data)
    assert m.extras == {"problem": "mnist", "seconds": 12.5} and m["problem"] == "mnist"
    assert list(m.to_dict()) == list(data) and dict(m) == data and {**m} == data


@pytest.mark.parametrize("data, message", [
    ({"config": {}, "mean": 0.5, "ci95": 0.1}, "lacks 'sha256' (the weights' checksum)"),
    ({"sha256": "a", "mean": 0.5, "ci95": 0.1},
     "lacks 'config' (the training config, a JSON object)"),
    ({"sha256": "a", "config": {}, "ci95": 0.1},
     "lacks 'mean' (the measured accuracy or MSE, a number)"),
    ({"sha256": "a", "config": {}, "mean": float("nan"), "ci95": 0.1},
     "'mean' must be a finite number, got nan"),
    ({"sha256": "a", "config": {}, "mean": 0.5, "ci95": 0.1, "kind": "net"},
     "kind must be one of 'meta-initialization', 'learned-optimizer', 'distilled-data', got "
     "'net' (str)"),
    ({"sha256": "a", "kind": "learned-optimizer"},
     "lacks 'net' (the learned optimizer's config, a JSON object)"),
    ({"sha256": "", "config": {}, "mean": 0.5, "ci95": 0.1}, "'sha256' must be a non-empty string"),
    ({"sha256": "a", "config": {}, "mean": 0.5, "ci95": 0.1, "test_steps": True},
     "test_steps must be int or None, got True (bool)"),
    ({"sha256": "a", "config": {}, "mean": 0.5, "ci95": 0.1, "test_steps": 0},
     "'test_steps' must be a positive integer, got 0"),
    ({"sha256": "a", "config": [], "mean": 0.5, "ci95": 0.1},
     "config must be mapping or None, got [] (list)"),
])
def test_a_wrong_field_is_one_line_naming_it(data, message):
    with pytest.raises(ConfigError) as info:
        Manifest.from_json(data)
    assert str(info.value) == message
    with pytest.raises(CheckpointError) as info:
        manifest_of(data, "of 'x'")
    assert str(info.value) == (
        f"pretrained manifest of 'x': {message}: re-publish the model (or remove its folder "
        "from the search path)")

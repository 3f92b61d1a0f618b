"""Typed configs: presets, YAML/JSON round trip, --set overrides with type checking."""
from __future__ import annotations

import json

import pytest
import yaml

from fewshot.config import (
    PRESETS,
    apply_overrides,
    get_preset,
    list_presets,
    load_config,
    read_config_file,
    save_config,
)
from fewshot.errors import ConfigError
from fewshot.learners import LEARNERS


def test_every_preset_builds_and_names():
    names = list_presets()
    for setting in ("5w1s", "5w5s", "20w1s", "20w5s"):
        for learner in ("maml", "fomaml", "mamlpp", "metasgd", "mtnet", "tnet", "lstm-meta"):
            assert f"omniglot-{setting}-{learner}" in names
    for setting in ("5w1s", "5w5s"):
        for learner in ("maml", "fomaml", "mamlpp", "metasgd", "mtnet", "tnet", "lstm-meta"):
            assert f"mini-imagenet-{setting}-{learner}" in names
    assert {"sinusoid-maml", "sinusoid-metasgd", "sinusoid-mtnet", "sinusoid-tnet"} <= set(names)
    for name in names:
        cfg = get_preset(name)
        assert cfg.preset == name
        assert name.endswith(f"-{cfg.learner.name}") and cfg.learner.name in LEARNERS, name


def test_preset_protocols_follow_the_papers():
    # inner LR in mean-reduced scale = reference alpha * ways (see the note in
    # fewshot/config/presets/protocols.py)
    c = get_preset("omniglot-5w1s-maml")
    assert (c.meta_batch, c.learner.config.inner_steps, c.learner.config.eval_steps) == (32, 1, 3)
    assert c.learner.config.inner_lr == pytest.approx(0.4 * 5)
    c = get_preset("omniglot-20w5s-maml")
    assert (c.meta_batch, c.learner.config.inner_steps, c.data.ways, c.data.shots) == (16, 5, 20, 5)
    assert c.learner.config.inner_lr == pytest.approx(0.1 * 20)
    c = get_preset("mini-imagenet-5w5s-fomaml")
    assert c.learner.config.first_order and c.meta_batch == 2 and c.data.queries == 15
    assert c.learner.config.inner_lr == pytest.approx(
        0.01 * 5) and c.learner.config.eval_steps == 10
    assert c.optim.clip_value == 10.0 and c.data.size == 84
    c = get_preset("omniglot-5w1s-mamlpp")
    lc = c.learner.config
    assert (lc.msl and lc.learn_inner_lr and lc.per_step_bn and lc.inner_steps == 5
            and c.optim.cosine)
    c = get_preset("sinusoid-maml")
    assert (c.data.shots, c.meta_batch, c.learner.config.inner_lr) == (5, 25, 0.01)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    cfg = apply_overrides(get_preset("omniglot-20w1s-mamlpp"),
                          ["learner.no_adapt=[model.head]", "seed=7"])
    path = save_config(cfg, tmp_path / f"c{suffix}")
    back = load_config(str(path))
    assert back.to_dict() == cfg.to_dict()
    assert back.learner.config.no_adapt == ("model.head",)
    assert [p.name for p in tmp_path.iterdir()] == [f"c{suffix}"]  # no temp file left


def test_overrides_apply_and_check_types():
    base = get_preset("sinusoid-maml")
    cfg = apply_overrides(base,
                          ["learner.inner_lr=0.5", "iterations=12", "optim.lr=1e-3",
                           "data.eval_queries=null",
                                 "optim.clip_norm=2", "learner.first_order=true"])
    assert (cfg.learner.config.inner_lr == 0.5 and cfg.iterations == 12 and cfg.optim.clip_norm
            == 2.0)
    assert cfg.data.eval_queries is None and cfg.learner.config.first_order is True
    assert isinstance(cfg.optim.clip_norm, float)
    # the original is untouched
    assert base.iterations == 70000 and base.learner.config.inner_lr == 0.01


@pytest.mark.parametrize("item, message", [
    ("learner.inner_lrr=1", "did you mean 'learner.inner_lr'"),
    ("iteratons=3", "did you mean 'iterations'"),
    ("optim.lrr=3", "did you mean 'optim.lr'"),
    ("iterations=abc", "iterations must be int"),
    ("data.ways=2.5", "data.ways must be int"),
    ("learner.first_order=maybe", "learner.first_order must be bool"),
    ("learner.bn_mode=foo", "one of 'transductive'"),
    ("learner.name=mamlp", "did you mean 'mamlpp'"),
    ("data.dataset=imagenet", "data.dataset 'imagenet' is unknown"),
    ("iterations=0", "iterations must be >= 1"),
    ("iterations", "is not key=value"),
    # issue 14: non-finite hyper-parameters are refused up front, not found as NaN weights later
    ("optim.lr=inf", r"optim.lr must be a finite number > 0 .*got inf: e.g. --set optim.lr=0.001"),
    ("optim.lr=nan", "optim.lr must be a finite number > 0"),
    ("optim.clip_norm=nan",
     r"optim.clip_norm must be a finite number > 0 or null \(no clipping\), got nan: e.g."),
    ("optim.clip_value=inf", "optim.clip_value must be a finite number > 0 or null"),
    ("optim.weight_decay=nan",
     "optim.weight_decay must be a finite number >= 0, got nan: e.g. --set"),
    ("optim.weight_decay=.inf", "optim.weight_decay must be a finite number >= 0, got inf"),
    ("optim.min_lr=nan", "optim.min_lr must be a finite number"),
    ("optim.betas=[0.9,nan]", "optim.betas must be two numbers in"),
    ("learner.inner_lr=inf", "inner_lr must be a finite number >= 0"),
    ("learner.inner_lr=nan", "inner_lr must be a finite number >= 0"),
    ("learner.checkpoint_steps=-1", "checkpoint_steps must be"),
    ("seed=1180591620717411303424",
     r"seed must be an integer in \[0, 2\*\*63\), got 1180591620717411303424: pass e"),
    ("seed=-1", r"seed must be an integer in \[0, 2\*\*63\)"),
])
def test_bad_overrides(item, message):
    with pytest.raises(ConfigError, match=message) as info:
        apply_overrides(get_preset("sinusoid-maml"), [item])
    assert "\n" not in str(info.value)


def test_learner_checkpoint_steps_is_a_setting():
    cfg = apply_overrides(get_preset("omniglot-5w1s-maml"), ["learner.checkpoint_steps=5"])
    assert cfg.learner.config.checkpoint_steps == 5
    # off unless asked for
    assert get_preset("omniglot-5w1s-maml").learner.config.checkpoint_steps == 0


def test_learner_switch_starts_from_its_preset():
    cfg = apply_overrides(get_preset("omniglot-5w1s-maml"),
                          ["learner.name=mamlpp", "learner.inner_steps=2"])
    assert (cfg.learner.name == "mamlpp" and cfg.learner.config.msl
            and cfg.learner.config.inner_steps == 2)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError,
                       match="unknown preset or config file 'omniglot-5w1s-mam'.*did you mean"):
        load_config("omniglot-5w1s-mam")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config_file(tmp_path / "bad.yaml")
    (tmp_path / "unk.json").write_text(json.dumps({"data": {"wayz": 5}}))
    with pytest.raises(ConfigError, match="did you mean 'data.ways'"):
        read_config_file(tmp_path / "unk.json")
    # yaml.safe_load: a python object tag is refused, never constructed
    (tmp_path / "evil.yaml").write_text("seed: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config_file(tmp_path / "evil.yaml")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_that_is_not_utf8(tmp_path, suffix):
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes('{"preset": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(ConfigError,
                       match=r"is not UTF-8 text \(byte 15 is 0xe9\): save it as UTF-8") as info:
        load_config(str(path))
    assert "\n" not in str(info.value)


def test_partial_file_uses_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"iterations": 5, "data": {"dataset": "sinusoid", "shots": 10},
                                                     "model": {"backbone": "mlp"},
                                                     "learner": {"name": "fomaml"}}))
    cfg = load_config(str(tmp_path / "c.yaml"))
    assert cfg.iterations == 5 and cfg.data.shots == 10 and cfg.learner.config.first_order
    assert cfg.meta_batch == 32  # dataclass default
    assert len(PRESETS) >= 19


def test_mini_imagenet_presets_follow_the_published_protocols():
    # conv4 with 32 filters (MAML, first-order MAML), 48 for MAML++ (its reference configuration),
    # 5-way, 15 query images per class at train and test, evaluation over 600 episodes.
    for shots in (1, 5):
        for learner, filters in (("maml", 32), ("fomaml", 32), ("mamlpp", 48)):
            c = get_preset(f"mini-imagenet-5w{shots}s-{learner}")
            assert (c.data.dataset, c.data.size, c.data.ways, c.data.shots) == ("mini-imagenet", 84,
                                                                                5, shots)
            assert c.data.queries == 15 and c.data.test_queries == 15
            assert (c.model.backbone, c.model.hidden, c.model.pool) == ("conv4", filters, True)
            assert c.eval_episodes == 600
            assert (c.data.train_split, c.data.val_split, c.data.test_split) == ("train", "val",
                                                                                 "test")


@pytest.mark.parametrize("text, message", [
    # issue 23: a section whose only line lacks its colon gave "learner must be a mapping, got str"
    ("learner:\n  inner_lr 0.01\n",
     r", line 2: learner must be a mapping, got str.*a line under it lacks its colon: "
     r"every setting is `key: value`"),
    ("preset: sinusoid-maml\niterations 100\nseed: 1\n",
     r", line 2: not valid YAML \(could not find expected ':'\): every setting is `key: value` \(a "
     r"colon and a "
     r"space\); add the missing colon"),
    ("learner:\n  inner_lr: 0.01\n  inner_steps 5\n",
     r", line 3: not valid YAML \(could not find expected ':'\)"),
    ("seed: 0\nlearner:\n  inner_lr: fast\n",
     r", line 3: learner.inner_lr must be float, got 'fast'"),
])
def test_config_file_errors_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "my.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^config file {path}" + message) as info:
        read_config_file(path)
    assert "\n" not in str(info.value)

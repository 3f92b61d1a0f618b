"""Changing the ways of a pretrained init: a zero N-way head, everything else unchanged, and it
adapts."""
import pytest
import torch

import fewshot.pretrained as pt
from episodes import FixedEpisodes, load_split
from fewshot.errors import ConfigError
from fewshot.scoring import evaluate_learner
from fewshot.training.ways import head_names, with_ways


def test_new_head_is_zero_and_every_other_tensor_is_unchanged():
    old, cfg, _ = pt.load_with_config("omniglot-5w1s-maml")
    before = {k: v.clone() for k, v in old.state_dict().items()}
    new, cfg20 = with_ways(old, cfg, 20)
    assert cfg20.data.ways == 20 and cfg.data.ways == 5
    assert head_names(new.model) == ("classifier.weight", "classifier.bias")
    assert new.model.classifier.weight.shape == (20, 64) and new.model.classifier.bias.shape == (20,
                                                                                                 )
    assert not new.model.classifier.weight.any() and not new.model.classifier.bias.any()
    changed = [k for k, v in new.state_dict().items() if not k.startswith("model.classifier.")
               and not torch.equal(v, before[k])]
    assert changed == []
    # the original is untouched
    assert all(torch.equal(v, before[k]) for k, v in old.state_dict().items())
    assert not new.training
    same, _ = with_ways(old, cfg, 5)  # its own ways: the trained head is kept
    assert torch.equal(same.model.classifier.weight, old.model.classifier.weight)


def test_meta_sgd_rates_of_new_classes_are_the_old_classes_mean():
    old, cfg, _ = pt.load_with_config("omniglot-5w1s-metasgd")
    new, _ = with_ways(old, cfg, 12)
    for i, p in enumerate(old.rule.alphas):
        q = new.rule.alphas[i]
        if q.shape == p.shape:
            assert torch.equal(q, p)
        else:  # the head's rates: [1, ways, ...]
            assert q.shape[1] == 12 and torch.allclose(q, p.mean(1, keepdim=True).expand_as(q))


def test_load_with_ways_adapts_and_solves_real_20_way_tasks(omniglot_root, monkeypatch):
    monkeypatch.setenv("FEWSHOT_DATA", str(omniglot_root))
    learner = pt.load("omniglot-5w1s-maml", ways=20)
    fixed = FixedEpisodes(load_split("omniglot", "test"), 20, 1, 2, count=20, seed=0)
    task = fixed[0]
    params = learner.adapt(task.support_x, task.support_y)
    head = params.params["classifier.weight"]
    # each class its own row
    assert head.shape == (20, 64) and len({tuple(r.tolist()) for r in head}) == 20
    assert learner.predict(task.query_x, params, support_x=task.support_x).shape == (40, 20)
    _, summary = evaluate_learner(learner, fixed.batches(10))
    assert summary.mean > 0.5  # chance is 0.05


def test_bad_requests_fail_in_one_line():
    old, cfg, _ = pt.load_with_config("omniglot-5w1s-mtnet")
    with pytest.raises(ConfigError,
                       match="cannot change the ways of this learner: its tensor "
                             "'rule.rules.0.logits'"):
        with_ways(old, cfg, 20)
    with pytest.raises(ConfigError, match="ways must be >= 2, got 1: pass ways=2 or more"):
        pt.load("omniglot-5w1s-maml", ways=1)
    with pytest.raises(ConfigError, match="a regression model has no classes"):
        pt.load("sinusoid-maml", ways=3)

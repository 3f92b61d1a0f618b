"""Model selection: the last state is published unless a validated checkpoint beats it beyond
noise."""
from __future__ import annotations

import pytest

from fewshot.config import apply_overrides, get_preset
from fewshot.reporting.selection import MIN_EPISODES, choose_checkpoint
from fewshot.training import train
from fewshot.training.build import build_learner_from_config


@pytest.fixture(scope="module")
def trained_and_fresh(tmp_path_factory):
    cfg = apply_overrides(get_preset("sinusoid-maml"),
                          ["iterations=300", "val_every=0", "device=cpu"])
    result = train(cfg, tmp_path_factory.mktemp("sel") / "run", quiet=True, tensorboard=False)
    return cfg, result.learner, build_learner_from_config(cfg, "cpu")


def test_a_better_best_checkpoint_is_chosen_and_a_worse_one_is_not(trained_and_fresh):
    cfg, trained, fresh = trained_and_fresh
    picked = choose_checkpoint(fresh, trained, cfg, last_iteration=300, best_iteration=200,
                               episodes=200)
    assert picked.chosen == "best" and picked.metric == "mse" and picked.episodes == 200
    # MSE: lower is better, and the gain is stated as positive
    assert picked.best_mean < picked.last_mean
    assert picked.difference == pytest.approx(picked.last_mean - picked.best_mean)
    assert (picked.difference > picked.difference_ci95 > 0
            and "beats the last state" in picked.reason)
    kept = choose_checkpoint(trained, fresh, cfg, last_iteration=300, best_iteration=200,
                             episodes=200)
    assert kept.chosen == "last" and kept.difference < 0 and "does not beat" in kept.reason


def test_equal_weights_keep_the_last_state_and_the_default_set_is_large(trained_and_fresh):
    cfg, trained, _ = trained_and_fresh
    same = choose_checkpoint(trained, trained, cfg, last_iteration=300, best_iteration=100,
                             episodes=50)
    assert same.chosen == "last" and same.difference == 0.0 and same.difference_ci95 == 0.0
    one = choose_checkpoint(trained, trained, cfg, last_iteration=300, best_iteration=300)
    assert one.chosen == "last" and one.episodes == max(cfg.val_episodes, MIN_EPISODES) >= 1000
    assert one.to_dict()["reason"] == "the best validated checkpoint is the last state"

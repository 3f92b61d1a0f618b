import pytest
import torch

from fewshot.errors import ConfigError
from fewshot.l2o import (
    BASELINES,
    QuadraticFamily,
    final_loss,
    make_baseline,
    run_trajectory,
    tune_baselines,
)


def test_tuning_picks_the_grid_value_with_the_lowest_final_loss():
    probs = QuadraticFamily().sample(8, 20, torch.Generator().manual_seed(0))
    grid = (1e-4, 1e-3, 1e-2, 1.0)
    tuned = tune_baselines(probs, 20, grid=grid)
    assert set(tuned) == set(BASELINES)
    for name, t in tuned.items():
        scores = {lr: final_loss(run_trajectory(probs, make_baseline(name, lr), 20)) for lr in grid}
        assert t.grid == scores
        assert t.lr == min(scores, key=scores.get)
    assert tuned["sgd"].grid[1.0] == float("inf")  # diverges on these quadratics


def test_baselines_are_the_torch_optimizers_with_torch7_defaults():
    theta = torch.zeros(3, requires_grad=True)
    nag = make_baseline("nag", 0.1)([theta])
    assert isinstance(nag,
                      torch.optim.SGD) and nag.defaults["momentum"] == 0.9 and nag.defaults[
                          "nesterov"]
    rms = make_baseline("rmsprop", 0.1)([theta])
    assert rms.defaults["alpha"] == 0.99 and rms.defaults["eps"] == 1e-8


def test_unknown_baseline_and_empty_grid_are_refused():
    with pytest.raises(ConfigError, match="unknown baseline"):
        make_baseline("adagrad", 0.1)
    probs = QuadraticFamily().sample(2, 2, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="grid is empty"):
        tune_baselines(probs, 2, grid=())

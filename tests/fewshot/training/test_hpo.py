"""fewshot.training.hpo on real MNIST at a tiny budget: every method spends the same inner steps,
ends with a network that learned, repeats exactly from its seed, and survives diverged trials."""
import pytest

from fewshot.errors import AdaptationError
from fewshot.training import hpo
from fewshot.training.hpo import METHODS, HPOConfig, compare, markdown_table, run_method


def _cfg(mnist_root):
    return HPOConfig(train_size=200, val_size=200, hidden=16, budget=100, run_steps=25,
                     warm_steps=10, data_root=str(mnist_root))


def test_every_method_spends_the_budget_and_learns(mnist_root, one_thread):
    rows = compare(_cfg(mnist_root), seeds=2)
    assert [r["method"] for r in rows] == list(METHODS)
    for row in rows:
        assert all(run["inner_steps"] == 100 for run in row["runs"]), row["method"]
        assert row["test_accuracy"]["mean"] > 0.5, (row["method"], row["test_accuracy"])
    implicit = rows[0]["runs"][0]
    assert implicit["hyperparameters"] == 784 * 16 + 16 + 16 * 10 + 10  # a decay per weight
    assert rows[1]["runs"][0]["hyperparameters"] == 4 * 25  # a rate per tensor and step
    table = markdown_table(rows)
    assert table.count("\n") == 1 + len(METHODS) and "| implicit-decay | 100 |" in table


def test_a_seed_repeats_exactly(mnist_root, one_thread):
    a = run_method(_cfg(mnist_root), "random", seed=3)
    assert run_method(_cfg(mnist_root), "random", seed=3) == a
    assert run_method(_cfg(mnist_root), "random", seed=4) != a


def test_a_diverged_search_trial_is_spent_and_skipped(mnist_root, one_thread, monkeypatch):
    # learning rates from 0.1 to 1e9: the grid's large ones diverge, its small ones win
    monkeypatch.setattr(hpo, "LR_RANGE", (0.1, 1e9))
    found = run_method(_cfg(mnist_root), "grid", seed=0)
    assert found["inner_steps"] == 100 and found["lr"] < 1e3 and found["test_accuracy"] > 0.2
    monkeypatch.setattr(hpo, "LR_RANGE", (1e30, 1e31))
    with pytest.raises(AdaptationError, match="every random search trial diverged"):
        run_method(_cfg(mnist_root), "random", seed=0)

"""fewshot.training.hpo on real MNIST at a tiny budget: every method spends the same inner steps,
ends with a network that learned, and repeats exactly from its seed."""
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

"""MAML++'s multi-step-loss weights against the paper's formulas."""
import pytest

from fewshot.schedules import msl_weights


def test_msl_weights_follow_annealing():
    n, big_e = 5, 10
    for e in range(0, 15):
        w = msl_weights(n, e, big_e)
        assert abs(sum(w) - 1.0) < 1e-12
        assert w[:-1] == [max(1 / n - e / (n * big_e), 0.03 / n)] * (n - 1)
    assert msl_weights(n, 0, big_e) == [0.2] * 5
    last = [msl_weights(n, e, big_e)[-1] for e in range(15)]
    assert all(x <= y for x, y in zip(last, last[1:]))
    assert last[-1] == pytest.approx(1 - (n - 1) * 0.03 / n)
    assert msl_weights(1, 3, 10) == [1.0]

"""ElementwiseSGD (Meta-SGD's rule): per-element updates, per-step rows, seeded init, errors."""
import pytest
import torch

from fewshot.errors import ConfigError
from fewshot.rules import ElementwiseSGD


def test_update_is_minus_alpha_times_grad_per_element_and_step():
    rule = ElementwiseSGD(["a", "b"], [(2, 3), (4,)], (0.01, 0.5), steps=2, seed=1,
                          dtype=torch.float64)
    g = {"a": torch.randn(2, 3, dtype=torch.float64), "b": torch.randn(4, dtype=torch.float64)}
    for step, row in ((0, 0), (1, 1), (5, 1)):  # steps past the last row reuse it
        updates, state = rule(g, {}, {}, step=step, loss=torch.tensor(0.0))
        assert state == {}
        assert torch.equal(updates["a"], -(rule.alphas[0][row] * g["a"]))
        assert torch.equal(updates["b"], -(rule.alphas[1][row] * g["b"]))
    assert not torch.equal(rule.alphas[0][0], rule.alphas[0][1])


def test_init_is_uniform_in_range_seeded_and_constant_when_low_equals_high():
    rule = ElementwiseSGD(["w"], [(100, 100)], (0.005, 0.1), seed=3, dtype=torch.float64)
    a = rule.alphas[0]
    assert a.shape == (1, 100, 100) and a.min() >= 0.005 and a.max() <= 0.1
    assert abs(a.mean().item() - 0.0525) < 2e-3
    same = ElementwiseSGD(["w"], [(100, 100)], (0.005, 0.1), seed=3, dtype=torch.float64)
    assert torch.equal(a, same.alphas[0])
    assert not torch.equal(a,
                           ElementwiseSGD(["w"], [(100, 100)], (0.005, 0.1), seed=4,
                                          dtype=torch.float64).alphas[0])
    const = ElementwiseSGD(["w"], [(3,)], (0.25, 0.25), steps=2)
    assert torch.all(const.alphas[0] == 0.25) and const.alphas[0].dtype == torch.float32
    assert isinstance(const.alphas[0], torch.nn.Parameter)


@pytest.mark.parametrize("args, kwargs, match", [
    (([], [], (0.1, 0.2)), {}, "at least one"),
    ((["a"], [(2,), (3,)], (0.1, 0.2)), {}, "one shape per name"),
    ((["a"], [(2,)], (0.1, 0.2)), {"steps": 0}, "steps"),
    ((["a"], [(2,)], (0.2, 0.1)), {}, "low <= high"),
    ((["a"], [(2,)], (0.1, float("nan"))), {}, "finite"),
])
def test_errors(args, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ElementwiseSGD(*args, **kwargs)

"""SinusoidTasks: shapes, the function and its parameter ranges, determinism and resume."""
import math

import pytest
import torch

from episodes import DataError, SinusoidTasks


def test_shapes_and_function():
    tasks = SinusoidTasks(shots=5, queries=7, seed=0)
    batch, params = tasks.sample(25, return_params=True)
    assert batch.ways is None
    assert batch.support_x.shape == (25, 5, 1) and batch.support_y.shape == (25, 5, 1)
    assert batch.query_x.shape == (25, 7, 1) and batch.query_y.shape == (25, 7, 1)
    for t in (batch.support_x, batch.support_y, batch.query_x, batch.query_y):
        assert t.dtype == torch.float32
    a, p = params["amplitude"].double(), params["phase"].double()
    for x, y in ((batch.support_x, batch.support_y), (batch.query_x, batch.query_y)):
        want = a.view(-1, 1, 1) * torch.sin(x.double() - p.view(-1, 1, 1))
        assert torch.allclose(y.double(), want, atol=1e-5)


def test_parameter_ranges_match_maml():
    _, params = SinusoidTasks(1, 1, seed=1).sample(5000, return_params=True)
    a, p = params["amplitude"], params["phase"]
    assert a.min() >= 0.1 and a.max() <= 5.0 and a.min() < 0.2 and a.max() > 4.9
    assert p.min() >= 0 and p.max() <= math.pi and p.min() < 0.05 and p.max() > math.pi - 0.05
    x = SinusoidTasks(50, 1, seed=2).sample(100).support_x
    assert x.min() >= -5 and x.max() <= 5 and x.min() < -4.9 and x.max() > 4.9
    assert abs(float(x.mean())) < 0.1  # uniform on [-5, 5]


def test_custom_ranges():
    batch, params = SinusoidTasks(3, 3, seed=0, amplitude=(2.0, 2.0), phase=(0.0, 0.0),
                                  x_range=(0.0, 1.0)).sample(
        4, return_params=True
    )
    assert torch.all(params["amplitude"] == 2.0) and torch.all(params["phase"] == 0.0)
    assert torch.allclose(batch.support_y, 2.0 * torch.sin(batch.support_x))
    assert batch.support_x.min() >= 0 and batch.support_x.max() <= 1


def test_determinism_and_resume():
    a = SinusoidTasks(5, 5, seed=3)
    b = SinusoidTasks(5, 5, seed=3)
    assert torch.equal(a.sample(4).support_y, b.sample(4).support_y)
    assert not torch.equal(SinusoidTasks(5, 5, seed=4).sample(4).support_y, SinusoidTasks(5, 5,
                                                                                          seed=3).sample(4).support_y)
    state = a.state_dict()
    want = [a.sample(4) for _ in range(2)]
    c = SinusoidTasks(5, 5, seed=0)
    c.load_state_dict(state)
    for w in want:
        got = c.sample(4)
        assert torch.equal(got.support_x, w.support_x) and torch.equal(got.query_y, w.query_y)


def test_does_not_touch_global_rng():
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    SinusoidTasks(5, 5, seed=3).sample(8)
    assert torch.equal(torch.rand(3), before)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(shots=0, queries=1), "shots must be >= 1"),
        (dict(shots=1, queries=-1), "queries must be >= 1"),
        (dict(shots=1, queries=1, amplitude=(5.0, 0.1)), "amplitude must be"),
        (dict(shots=1, queries=1, x_range=(0, float("nan"))), "x_range must be"),
        (dict(shots=1, queries=1, phase="x"), "phase must be"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(DataError, match=match):
        SinusoidTasks(seed=0, **kwargs)
    with pytest.raises(DataError, match="batch_size"):
        SinusoidTasks(1, 1, seed=0).sample(0)
    with pytest.raises(DataError, match="generator"):
        SinusoidTasks(1, 1, seed=0).load_state_dict({})

import math

import pytest
import torch

from fewshot.errors import ConfigError
from fewshot.l2o import preprocess_gradients


@pytest.mark.parametrize("p", [10.0, 5.0, 1.0])
def test_large_branch_is_log_magnitude_over_p_and_sign(p):
    g = torch.tensor([0.5, -3.0, math.exp(-p) * 20, -math.exp(-p) * 1.5], dtype=torch.float64)
    out = preprocess_gradients(g, p)
    for i, v in enumerate(g.tolist()):
        assert out[i, 0].item() == pytest.approx(math.log(abs(v)) / p, rel=1e-12)
        assert out[i, 1].item() == math.copysign(1.0, v)


@pytest.mark.parametrize("p", [10.0, 5.0, 1.0])
def test_small_branch_is_minus_one_and_scaled_gradient(p):
    g = torch.tensor([math.exp(-p) * 0.5, -math.exp(-p) * 0.25, 0.0], dtype=torch.float64)
    out = preprocess_gradients(g, p)
    for i, v in enumerate(g.tolist()):
        assert out[i, 0].item() == -1.0
        assert out[i, 1].item() == pytest.approx(math.exp(p) * v, rel=1e-12, abs=1e-300)


def test_boundary_takes_the_large_branch_and_both_branches_meet_there():
    p = 10.0
    edge = torch.tensor([math.exp(-p), -math.exp(-p)], dtype=torch.float64)
    out = preprocess_gradients(edge, p)
    assert torch.allclose(out, torch.tensor([[-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64),
                          atol=1e-12)
    below = preprocess_gradients(edge * (1 - 1e-9), p)
    above = preprocess_gradients(edge * (1 + 1e-9), p)
    assert below[0, 0].item() == -1.0 and above[0, 1].item() == 1.0  # different branches ...
    assert torch.allclose(below, above, atol=1e-8)                     # ... but continuous


def test_shape_is_kept_with_a_trailing_pair():
    assert preprocess_gradients(torch.randn(3, 4), 10.0).shape == (3, 4, 2)


@pytest.mark.parametrize("p", [0, -1.0, float("nan"), float("inf"), True, "10"])
def test_non_positive_or_non_finite_p_is_refused(p):
    with pytest.raises(ConfigError, match="p must be a finite number > 0"):
        preprocess_gradients(torch.ones(2), p)

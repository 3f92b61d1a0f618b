import pytest
import torch
from torch import nn

from fewshot.errors import ConfigError
from fewshot.l2o import MLPFamily, QuadraticFamily
from fewshot.l2o.problems import mlp_num_params


def test_quadratic_loss_is_squared_residual_norm():
    probs = QuadraticFamily(dim=4).sample(3, 10, torch.Generator().manual_seed(0))
    theta = torch.randn(3, 4)
    expected = torch.stack([((probs.W[b] @ theta[b] - probs.y[b]) ** 2).sum() for b in range(3)])
    assert torch.allclose(probs.loss(theta, 0), expected, atol=1e-5)
    assert probs.init().shape == (3, 4) and probs.init() is not probs.init()
    assert float(probs.minimum().max()) < 1e-6  # Gaussian W is invertible


def test_sampling_is_deterministic_per_seed():
    a = QuadraticFamily().sample(5, 10, torch.Generator().manual_seed(3))
    b = QuadraticFamily().sample(5, 10, torch.Generator().manual_seed(3))
    c = QuadraticFamily().sample(5, 10, torch.Generator().manual_seed(4))
    assert torch.equal(a.W, b.W) and torch.equal(a.theta0, b.theta0) and not torch.equal(a.W, c.W)


def _data(n=300, d=12, classes=4):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("hidden,activation", [((5,), "sigmoid"), ((5, 3), "relu")])
def test_mlp_loss_matches_torch_modules_with_the_same_weights(hidden, activation):
    x, y = _data()
    family = MLPFamily(x, y, hidden=hidden, activation=activation, batch_size=16)
    probs = family.sample(2, 4, torch.Generator().manual_seed(1))
    theta = probs.init() + 0.1 * torch.randn(2, probs.dim)
    assert probs.dim == mlp_num_params(family.sizes)
    got = probs.loss(theta, 2)
    for b in range(2):
        layers, offset = [], 0
        for fan_in, fan_out in zip(family.sizes[:-1], family.sizes[1:]):
            lin = nn.Linear(fan_in, fan_out)
            with torch.no_grad():
                lin.weight.copy_(theta[b, offset:offset + fan_in * fan_out].view(fan_in, fan_out).T)
                offset += fan_in * fan_out
                lin.bias.copy_(theta[b, offset:offset + fan_out])
                offset += fan_out
            layers += [lin, nn.Sigmoid() if activation == "sigmoid" else nn.ReLU()]
        model = nn.Sequential(*layers[:-1])
        idx = probs.indices[b, 2]
        want = nn.functional.cross_entropy(model(x[idx]), y[idx])
        assert got[b].item() == pytest.approx(want.item(), rel=1e-5)


def test_mlp_init_is_gaussian_scaled_by_fan_in_with_zero_biases():
    x, y = _data(d=400)
    probs = MLPFamily(x, y, hidden=(50,)).sample(20, 2, torch.Generator().manual_seed(0))
    w1 = probs.theta0[:, : 400 * 50]
    assert abs(w1.std().item() - 400 ** -0.5) < 0.002
    assert torch.count_nonzero(probs.theta0[:, 400 * 50: 400 * 50 + 50]) == 0


def test_each_step_has_its_own_minibatch_and_steps_are_bounded():
    x, y = _data()
    probs = MLPFamily(x, y, batch_size=8).sample(2, 3, torch.Generator().manual_seed(0))
    assert probs.indices.shape == (2, 4, 8)
    assert not torch.equal(probs.indices[0, 0], probs.indices[0, 1])
    with pytest.raises(ConfigError, match="outside the 3 steps"):
        probs.loss(probs.init(), 4)


def test_bad_mlp_inputs_are_refused():
    x, y = _data()
    with pytest.raises(ConfigError, match="float tensor"):
        MLPFamily(x.view(300, 3, 4), y)
    with pytest.raises(ConfigError, match="int64"):
        MLPFamily(x, y.int())
    with pytest.raises(ConfigError, match="unknown activation"):
        MLPFamily(x, y, activation="gelu")

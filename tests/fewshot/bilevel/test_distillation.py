"""Dataset distillation (fewshot.bilevel.distillation) on a small real problem: three Gaussian
classes in 2-D.  Three learned points (one per class) must train a linear model from its fixed
initialisation to what the real data trains it to; their gradient matches finite differences."""
import pytest
import torch
from torch import nn

from fewshot.bilevel.distillation import DistilledData, distillation_loss, train_on_distilled
from fewshot.errors import ConfigError
from fewshot.functional import call, split_state

F64 = torch.float64


def _blobs(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[3.0, 0.0], [-1.5, 2.6], [-1.5, -2.6]], dtype=F64)
    y = torch.arange(n) % 3
    return centres[y] + torch.randn(n, 2, generator=g, dtype=F64), y


def _accuracy(model, params, x, y):
    return float((call(model, params, {}, x).argmax(-1) == y).double().mean())


def _distill(soft_labels: bool, iterations: int = 150):
    torch.manual_seed(0)
    model = nn.Linear(2, 3).double()
    init = {n: p.detach() for n, p in split_state(model)[0].items()}
    data = DistilledData(3, 1, steps=1, epochs=2, image_shape=(2,), lr=0.1,
                         soft_labels=soft_labels, generator=torch.Generator().manual_seed(1),
                         dtype=F64)
    x, y = _blobs(300, 0)
    opt = torch.optim.Adam(data.parameters(), lr=0.05)
    losses = []
    for _ in range(iterations):
        opt.zero_grad()
        loss = distillation_loss(model, data, init, x, y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model, init, data, losses


@pytest.mark.parametrize("soft_labels", [False, True])
def test_three_learned_points_train_the_model_as_the_real_data_would(soft_labels):
    model, init, data, losses = _distill(soft_labels)
    xt, yt = _blobs(600, 1)
    before = _accuracy(model, init, xt, yt)
    trained = train_on_distilled(model, data, init)
    assert not any(p.requires_grad for p in trained.values())
    assert losses[-1] < 0.5 * losses[0]
    assert _accuracy(model, trained, xt, yt) >= 0.95 > before + 0.2


def test_the_distillation_gradient_equals_central_finite_differences():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    init = {n: p.detach() for n, p in split_state(model)[0].items()}
    data = DistilledData(3, 2, steps=2, epochs=2, image_shape=(2,), lr=0.2, soft_labels=True,
                         generator=torch.Generator().manual_seed(3), dtype=F64)
    x, y = _blobs(60, 2)
    loss = distillation_loss(model, data, init, x, y, checkpoint=2)
    grads = torch.autograd.grad(loss, list(data.parameters()))
    for p, g in zip(data.parameters(), grads):
        index = tuple(s - 1 for s in p.shape)
        fd = _central_difference(lambda: distillation_loss(model, data, init, x, y), p, index)
        assert abs(float(g[index]) - fd) <= 1e-6 * max(1.0, abs(fd))


def _central_difference(loss, tensor: torch.Tensor, index: tuple, eps: float = 1e-6) -> float:
    """(loss(t + eps) - loss(t - eps)) / 2 eps for the entry ``index`` of ``tensor``, which is
    left as it was."""
    with torch.no_grad():
        tensor[index] += eps
        up = float(loss())
        tensor[index] -= 2 * eps
        down = float(loss())
        tensor[index] += eps
    return (up - down) / (2 * eps)


def _mlp_problem(per_layer: bool):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    init = {n: p.detach() for n, p in model.named_parameters()}
    layers = list(init) if per_layer else None
    data = DistilledData(3, 2, steps=2, epochs=2, image_shape=(2,), lr=0.2, layers=layers,
                         generator=torch.Generator().manual_seed(3), dtype=F64)
    return model, init, data


def test_per_layer_step_sizes_started_equal_train_as_one_shared_step_size_does():
    model, init, shared = _mlp_problem(False)
    _, _, per_layer = _mlp_problem(True)
    assert per_layer.step_sizes.lrs.shape == (4, 4)
    expected = train_on_distilled(model, shared, init)
    got = train_on_distilled(model, per_layer, init)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)


def test_each_per_layer_step_size_gets_the_finite_difference_gradient():
    model, init, data = _mlp_problem(True)
    with torch.no_grad():  # distinct rates, so that a mixed-up layer would show
        data.step_sizes.raw.add_(0.1 * torch.randn(4, 4, generator=torch.Generator()
                                                   .manual_seed(4), dtype=F64))
    x, y = _blobs(60, 2)
    raw = data.step_sizes.raw
    (grad,) = torch.autograd.grad(distillation_loss(model, data, init, x, y), [raw])
    for index in torch.cartesian_prod(torch.arange(4), torch.arange(4)).tolist():
        fd = _central_difference(lambda: distillation_loss(model, data, init, x, y), raw,
                                 tuple(index))
        assert abs(float(grad[tuple(index)]) - fd) <= 1e-7 * max(1.0, abs(fd))


def test_per_layer_step_sizes_for_another_network_are_refused():
    _, _, data = _mlp_problem(True)
    refused = (r"the step sizes are per layer of \['0.bias', '0.weight', '2.bias', '2.weight'\], "
               r"but the network trains \['bias'")
    with pytest.raises(ConfigError, match=refused):
        train_on_distilled(nn.Linear(2, 3).double(), data)
    with pytest.raises(ConfigError, match="layers must be distinct parameter names"):
        DistilledData(3, 1, 1, 1, (2,), layers=["w", "w"])


def test_a_model_with_batch_norm_is_refused():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    data = DistilledData(3, 1, 1, 1, (2,))
    with pytest.raises(ConfigError, match="without batch norm"):
        train_on_distilled(model, data)


def test_a_frozen_model_trains_from_its_own_weights():
    model, init, data, _ = _distill(False, iterations=5)
    expected = train_on_distilled(model, data, init)
    got = train_on_distilled(model.requires_grad_(False), data)
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)


def test_an_initialisation_that_misses_a_parameter_is_refused():
    model, init, data, _ = _distill(False, iterations=1)
    x, y = _blobs(10, 0)
    with pytest.raises(ConfigError, match=r"missing \['bias'\]"):
        distillation_loss(model, data, {"weight": init["weight"]}, x, y)
    with pytest.raises(ConfigError, match=r"unknown \['head.weight'\]"):
        train_on_distilled(model, data, {**init, "head.weight": init["weight"]})

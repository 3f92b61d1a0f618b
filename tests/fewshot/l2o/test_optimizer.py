import pytest
import torch
from torch import nn

from fewshot.errors import ConfigError
from fewshot.l2o import LearnedOptimizer
from fewshot.pretrained import load_learned_optimizer


def _grads_step(params, grads, opt):
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt.step()


def test_updates_are_the_nets_outputs_with_per_parameter_states(small_net):
    a = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    opt = LearnedOptimizer([a, b], net=small_net)
    sa, sb = small_net.initial_state(6), small_net.initial_state(4)
    a_ref, b_ref = a.detach().clone(), b.detach().clone()
    for _ in range(3):
        ga, gb = torch.randn(3, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
        _grads_step([a, b], [ga, gb], opt)
        ua, sa = small_net(ga.reshape(-1), sa)
        ub, sb = small_net(gb, sb)
        a_ref, b_ref = a_ref + ua.detach().view(3, 2), b_ref + ub.detach()
    assert torch.allclose(a.detach(), a_ref, atol=1e-13) and torch.allclose(b.detach(), b_ref,
                                                                            atol=1e-13)
    assert opt.state[a]["step"] == 3 and opt.state[a]["h0"].shape == (6, 8)


def test_permuting_a_parameters_entries_permutes_its_updates(small_net):
    torch.manual_seed(0)
    target, weight = torch.randn(10, dtype=torch.float64), torch.rand(10, dtype=torch.float64)
    perm = torch.randperm(10)
    start = torch.randn(10, dtype=torch.float64)

    def optimize(x0, t, w):
        p = x0.clone().requires_grad_(True)
        opt = LearnedOptimizer([p], net=small_net)
        for _ in range(5):
            opt.zero_grad()
            (w * (p - t) ** 2).sum().backward()
            opt.step()
        return p.detach()

    assert torch.allclose(optimize(start[perm], target[perm], weight[perm]),
                          optimize(start, target, weight)[perm], atol=1e-13)


def test_state_dict_round_trip_resumes_exactly(small_net):
    torch.manual_seed(1)
    grads = [torch.randn(5, dtype=torch.float64) for _ in range(6)]
    p = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = LearnedOptimizer([p], net=small_net)
    for g in grads:
        _grads_step([p], [g], opt)
    q = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    first = LearnedOptimizer([q], net=small_net)
    for g in grads[:3]:
        _grads_step([q], [g], first)
    saved = first.state_dict()
    second = LearnedOptimizer([q], net=small_net)
    second.load_state_dict(saved)
    for g in grads[3:]:
        _grads_step([q], [g], second)
    assert torch.equal(p, q)


def test_loading_state_saved_for_another_shape_is_refused(small_net):
    p = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    opt = LearnedOptimizer([p], net=small_net)
    _grads_step([p], [torch.ones(6, dtype=torch.float64)], opt)
    other = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    fresh = LearnedOptimizer([other], net=small_net)
    with pytest.raises(ConfigError, match=r"shape \(2, 4\) \(8 coordinates\) holds 6 coordinates"):
        fresh.load_state_dict(opt.state_dict())


def test_lr_scales_the_learned_update(small_net):
    ps = [torch.zeros(4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    for p, lr in zip(ps, (1.0, 0.5, 0.0)):
        _grads_step([p], [torch.arange(4.0, dtype=torch.float64)],
                    LearnedOptimizer([p], net=small_net, lr=lr))
    assert torch.allclose(ps[1], ps[0] / 2) and torch.count_nonzero(ps[2]) == 0


def test_constructor_errors(small_net):
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ConfigError, match="needs net= \\(a CoordinateLSTM\\)"):
        LearnedOptimizer([p])
    with pytest.raises(ConfigError, match="lr must be"):
        LearnedOptimizer([p], net=small_net, lr=-1.0)
    with pytest.raises(ConfigError, match="must be a fewshot.l2o.CoordinateLSTM"):
        LearnedOptimizer([p], net=nn.Linear(2, 2))


def test_pretrained_mnist_optimizer_trains_a_new_small_model():
    """The shipped l2o-mnist weights, on a model and data it never saw: the loss must fall a lot."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 10, generator=g) * 2
    y = torch.randint(0, 3, (256,), generator=g)
    x = centers[y] + torch.randn(256, 10, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.Sigmoid(), nn.Linear(16, 3))
    opt = LearnedOptimizer(model.parameters(), net=load_learned_optimizer("l2o-mnist"))
    losses = []
    for _ in range(100):
        loss = nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.3 * losses[0]


def test_chunked_step_equals_one_call_over_all_coordinates(small_net, monkeypatch):
    import fewshot.l2o.optimizer as module

    g = torch.randn(2, 50, dtype=torch.float64)
    results = []
    for chunk in (7, 1000):
        monkeypatch.setattr(module, "CHUNK", chunk)
        p = torch.zeros(2, 50, dtype=torch.float64, requires_grad=True)
        opt = LearnedOptimizer([p], net=small_net)
        for _ in range(3):
            p.grad = g.clone()
            opt.step()
        results.append((p.detach().clone(), opt.state[p]["c1"].clone()))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-13)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-13)

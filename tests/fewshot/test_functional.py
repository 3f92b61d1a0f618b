"""The functional inner loop against the `higher` oracle, finite differences and a closed-form
quadratic."""
import higher
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.functional import (
    InnerLoop,
    adaptable_names,
    call,
    first_nonfinite_step,
    grads_and_loss,
    norm_param_names,
    split_state,
)
from fewshot.nn import StepBatchNorm1d
from fewshot.rules import SGD, Chain, UpdateRule, apply_updates


def _sgd(names, lr, steps=1):
    return SGD(list(names), lr, steps=steps, dtype=torch.float64)


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)  # test-only: module init; library code never uses the global RNG
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh(),
                         nn.Linear(4, 2)).double()


def _data(seed: int, n: int = 8):
    g = torch.Generator().manual_seed(seed)
    sx = torch.randn(n, 3, generator=g, dtype=torch.float64)
    qx = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return (sx, torch.randn(n, 2, generator=g, dtype=torch.float64),
            qx, torch.randn(n, 2, generator=g, dtype=torch.float64))


def _ours(model, steps, lr, first_order, data):
    sx, sy, qx, qy = data
    params, buffers = split_state(model)
    res = InnerLoop(model, _sgd(params, lr), list(params), F.mse_loss).run(
        params, buffers, sx, sy, steps=steps, first_order=first_order)
    loss = F.mse_loss(call(model, res.params[-1], res.buffers, qx), qy)
    return torch.autograd.grad(loss, list(params.values()))


def _higher(model, steps, lr, first_order, data):
    sx, sy, qx, qy = data
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    fmodel = higher.monkeypatch(model, copy_initial_weights=False, track_higher_grads=True)
    diffopt = higher.optim.get_diff_optim(opt, model.parameters(), fmodel=fmodel,
                                          track_higher_grads=True)
    # FOMAML in higher
    detach = (lambda grads: [g.detach() for g in grads]) if first_order else None
    for _ in range(steps):
        diffopt.step(F.mse_loss(fmodel(sx), sy), grad_callback=detach)
    loss = F.mse_loss(fmodel(qx), qy)
    return torch.autograd.grad(loss, list(model.parameters()))


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradients_match_higher(steps, first_order):
    model, data = _net(0), _data(1)
    ours = _ours(model, steps, 0.3, first_order, data)
    ref = _higher(model, steps, 0.3, first_order, data)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-8)
    # first and second order really differ (the test above could not pass by accident)
    if not first_order:
        other = _ours(model, steps, 0.3, True, data)
        assert max((a - b).abs().max().item() for a, b in zip(ours, other)) > 1e-4


def test_second_order_matches_finite_differences():
    model, (sx, sy, qx, qy) = _net(2), _data(3, n=5)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def meta_loss(*flat):
        params = dict(zip(names, flat))
        res = InnerLoop(model, _sgd(names, 0.2), names, F.mse_loss).run(params, {}, sx, sy, steps=2)
        return F.mse_loss(call(model, res.params[-1], {}, qx), qy)

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    assert [i.shape for i in inputs] == shapes
    assert torch.autograd.gradcheck(meta_loss, inputs, eps=1e-6, atol=1e-6)


def test_first_order_drops_hessian_term_on_quadratic():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(4, 4, generator=g, dtype=torch.float64)
    a = m @ m.T + torch.eye(4, dtype=torch.float64)
    b, c = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g,
                                                                         dtype=torch.float64)
    theta0 = torch.randn(4, generator=g, dtype=torch.float64)
    alpha = 0.05

    class Quad(nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = nn.Parameter(theta0.clone())

        def forward(self, target):  # returns the loss itself; loss_fn picks it
            return 0.5 * self.theta @ a @ self.theta - target @ self.theta

    model = Quad()
    identity = lambda out, _y: out  # noqa: E731
    params, _ = split_state(model)
    for first_order in (False, True):
        res = InnerLoop(model, _sgd(["theta"], alpha), ["theta"], identity).run(
            params, {}, b, b, steps=1, first_order=first_order)
        lq = call(model, res.params[-1], {}, c)
        (grad,) = torch.autograd.grad(lq, [params["theta"]])
        theta1 = theta0 - alpha * (a @ theta0 - b)
        grad_q = a @ theta1 - c
        expected = grad_q if first_order else (
            torch.eye(4, dtype=torch.float64) - alpha * a) @ grad_q
        assert torch.allclose(grad, expected, atol=1e-12)


def test_inner_loop_never_writes_callers_buffers_and_skips_norm_params():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), StepBatchNorm1d(4), nn.Linear(4, 2))
    params, buffers = split_state(model)
    before = {k: v.clone() for k, v in buffers.items()}
    names = adaptable_names(model)
    assert norm_param_names(model) == {"1.weight", "1.bias"}
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    res = InnerLoop(model, SGD(names, 0.1), names, F.mse_loss).run(params, buffers, x, y, steps=2)
    for k in buffers:
        assert torch.equal(buffers[k], before[k])
    assert not torch.equal(res.buffers["1.running_mean"], before["1.running_mean"])
    assert res.params[-1]["1.weight"] is params["1.weight"]
    assert not torch.equal(res.params[-1]["0.weight"], params["0.weight"])


def test_sgd_rule_indexes_lrs_by_tensor_and_step_and_nonfinite_detection():
    rule = SGD(["w", "b"], 0.5, steps=2)
    with torch.no_grad():
        rule.lrs.copy_(torch.tensor([[0.5, 0.1], [0.2, 0.3]]))
    p = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([1.0, 1.0])}
    g = {"w": torch.tensor([1.0, 1.0]), "b": torch.tensor([2.0, 2.0])}
    # past the last column: clamped
    for step, (lw, lb) in ((0, (0.5, 0.2)), (1, (0.1, 0.3)), (7, (0.1, 0.3))):
        updates, _ = rule(g, {}, p, step=step, loss=torch.tensor(0.0))
        new = apply_updates(p, updates)
        assert torch.allclose(new["w"], p["w"] - lw * g["w"]) and torch.allclose(new["b"],
                                                                                 p["b"] - lb * g[
                                                                                     "b"])
    # a 1-d parameter of size `steps` (a bias) is not mistaken for per-step LRs any more
    assert rule.lr("b", 0).dim() == 0
    assert first_nonfinite_step(torch.tensor([[1.0, 2.0], [1.0, float("nan")]])) == 1
    assert first_nonfinite_step(torch.tensor([1.0, 2.0])) is None


class _Scale(UpdateRule):
    """Multiplies updates by a factor; counts steps in its state (a stateful test rule)."""

    noise_size = 1

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def init(self, params, noise=None):
        return {"count": torch.zeros(()), "noise": torch.zeros(()) if noise is None else noise[0]}

    def forward(self, grads, state, params, *, step, loss):
        return ({n: self.factor * g for n, g in grads.items()},
                {"count": state["count"] + 1, "noise": state["noise"]})


def test_chain_composes_rules_in_order_and_splits_noise_and_state():
    model, (sx, sy, _, _) = _net(4), _data(5)
    params, _ = split_state(model)
    names = list(params)
    chained = Chain(_Scale(3.0), _sgd(names, 0.1))
    assert chained.noise_size == 1
    res = InnerLoop(model, chained, names, F.mse_loss).run(
        params, {}, sx, sy, steps=2, noise=torch.tensor([0.25]))
    plain = InnerLoop(model, _sgd(names, 0.3), names, F.mse_loss).run(params, {}, sx, sy, steps=2)
    for n in names:
        assert torch.allclose(res.params[-1][n], plain.params[-1][n], atol=1e-14)
    assert res.state["0"]["count"].item() == 2 and res.state["0"]["noise"].item() == 0.25
    assert res.state["1"] == {}


def test_grads_and_loss_gives_the_loss_and_a_gradient_per_adapted_name():
    model, (sx, sy, _, _) = _net(9), _data(10)
    params, buffers = split_state(model)
    grads, loss, _ = grads_and_loss(model, params, buffers, sx, sy, loss_fn=F.mse_loss,
                                    names=list(params))
    assert torch.allclose(loss, F.mse_loss(model(sx), sy), atol=1e-14, rtol=0)
    assert set(grads) == set(params)


def test_grads_loss_and_hvp_equal_the_dense_hessian():
    """``grads_loss_and_hvp``'s products against ``torch.autograd.functional.hessian`` of the same
    loss (float64, a tanh MLP's first layer), per task and under vmap."""
    from fewshot.functional import grads_loss_and_hvp
    torch.manual_seed(0)  # test-only init
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    params = {n: p.detach() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g,
                                                                            dtype=torch.float64)
    names = ["0.weight"]

    def loss_of(w):
        return F.mse_loss(torch.func.functional_call(model, {**params, "0.weight": w}, (x,)), y)

    dense = torch.autograd.functional.hessian(loss_of, params["0.weight"]).reshape(12, 12)
    v = torch.randn(4, 3, generator=g, dtype=torch.float64)
    grads, loss, _, hvp = grads_loss_and_hvp(model, params, {}, x, y, loss_fn=F.mse_loss,
                                             names=names)
    assert torch.allclose(hvp({"0.weight": v})["0.weight"].reshape(-1), dense @ v.reshape(-1),
                          atol=1e-12)
    assert torch.allclose(loss, loss_of(params["0.weight"]), atol=1e-15)

    def batched(xv):
        return grads_loss_and_hvp(model, params, {}, x, y, loss_fn=F.mse_loss,
                                  names=names)[3]({"0.weight": xv})
    both = torch.func.vmap(batched)(torch.stack([v, 2 * v]))["0.weight"]
    assert torch.allclose(both[1].reshape(-1), 2 * dense @ v.reshape(-1), atol=1e-12)

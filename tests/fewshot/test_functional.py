"""The functional inner loop against the `higher` oracle, finite differences and a closed-form quadratic."""
import higher
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import ConfigError, FewshotError
from fewshot.functional import (
    adaptable_names,
    call,
    first_nonfinite_step,
    inner_loop,
    msl_weights,
    norm_param_names,
    split_state,
)
from fewshot.nn import StepBatchNorm1d
from fewshot.rules import SGD, Chain, UpdateRule, apply_updates


def _sgd(names, lr, steps=1):
    return SGD(list(names), lr, steps=steps, dtype=torch.float64)


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)  # test-only: module init; library code never uses the global RNG
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def _data(seed: int, n: int = 8):
    g = torch.Generator().manual_seed(seed)
    sx = torch.randn(n, 3, generator=g, dtype=torch.float64)
    qx = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return (sx, torch.randn(n, 2, generator=g, dtype=torch.float64),
            qx, torch.randn(n, 2, generator=g, dtype=torch.float64))


def _ours(model, steps, lr, first_order, data):
    sx, sy, qx, qy = data
    params, buffers = split_state(model)
    res = inner_loop(model, params, buffers, sx, sy, loss_fn=F.mse_loss, steps=steps,
                     rule=_sgd(params, lr), names=list(params), first_order=first_order)
    loss = F.mse_loss(call(model, res.params[-1], res.buffers, qx), qy)
    return torch.autograd.grad(loss, list(params.values()))


def _higher(model, steps, lr, first_order, data):
    sx, sy, qx, qy = data
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    fmodel = higher.monkeypatch(model, copy_initial_weights=False, track_higher_grads=True)
    diffopt = higher.optim.get_diff_optim(opt, model.parameters(), fmodel=fmodel, track_higher_grads=True)
    detach = (lambda grads: [g.detach() for g in grads]) if first_order else None  # FOMAML in higher
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
        res = inner_loop(model, params, {}, sx, sy, loss_fn=F.mse_loss, steps=2, rule=_sgd(names, 0.2), names=names)
        return F.mse_loss(call(model, res.params[-1], {}, qx), qy)

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    assert [i.shape for i in inputs] == shapes
    assert torch.autograd.gradcheck(meta_loss, inputs, eps=1e-6, atol=1e-6)


def test_first_order_drops_hessian_term_on_quadratic():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(4, 4, generator=g, dtype=torch.float64)
    a = m @ m.T + torch.eye(4, dtype=torch.float64)
    b, c = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
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
        res = inner_loop(model, params, {}, b, b, loss_fn=identity, steps=1, rule=_sgd(["theta"], alpha),
                         names=["theta"], first_order=first_order)
        lq = call(model, res.params[-1], {}, c)
        (grad,) = torch.autograd.grad(lq, [params["theta"]])
        theta1 = theta0 - alpha * (a @ theta0 - b)
        grad_q = a @ theta1 - c
        expected = grad_q if first_order else (torch.eye(4, dtype=torch.float64) - alpha * a) @ grad_q
        assert torch.allclose(grad, expected, atol=1e-12)


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


def test_inner_loop_never_writes_callers_buffers_and_skips_norm_params():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), StepBatchNorm1d(4), nn.Linear(4, 2))
    params, buffers = split_state(model)
    before = {k: v.clone() for k, v in buffers.items()}
    names = adaptable_names(model)
    assert norm_param_names(model) == {"1.weight", "1.bias"}
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    res = inner_loop(model, params, buffers, x, y, loss_fn=F.mse_loss, steps=2, rule=SGD(names, 0.1), names=names)
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
    for step, (lw, lb) in ((0, (0.5, 0.2)), (1, (0.1, 0.3)), (7, (0.1, 0.3))):  # past the last column: clamped
        updates, _ = rule(g, {}, p, step=step, loss=torch.tensor(0.0))
        new = apply_updates(p, updates)
        assert torch.allclose(new["w"], p["w"] - lw * g["w"]) and torch.allclose(new["b"], p["b"] - lb * g["b"])
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
    res = inner_loop(model, params, {}, sx, sy, loss_fn=F.mse_loss, steps=2, rule=chained, names=names,
                     noise=torch.tensor([0.25]))
    plain = inner_loop(model, params, {}, sx, sy, loss_fn=F.mse_loss, steps=2, rule=_sgd(names, 0.3), names=names)
    for n in names:
        assert torch.allclose(res.params[-1][n], plain.params[-1][n], atol=1e-14)
    assert res.state["0"]["count"].item() == 2 and res.state["0"]["noise"].item() == 0.25
    assert res.state["1"] == {}


# --------------------------------------------------------------------------- checkpointed inner loop
def _bn_net(seed: int, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)  # test-only module init
    return nn.Sequential(nn.Linear(3, 6), StepBatchNorm1d(6, steps=4), nn.Tanh(), nn.Dropout(dropout),
                         nn.Linear(6, 2)).double()


def _msl_meta_grads(model, rule, data, *, steps, first_order, checkpoint, keep, names=None):
    """Query losses after the kept steps (MSL-style), their sum's gradients w.r.t. the model's and the
    rule's parameters, and the loop's losses and buffers."""
    sx, sy, qx, qy = data
    params, buffers = split_state(model)
    names = list(params) if names is None else names
    res = inner_loop(model, params, buffers, sx, sy, loss_fn=F.mse_loss, steps=steps, rule=rule, names=names,
                     first_order=first_order, keep=keep, checkpoint=checkpoint)
    total = sum(F.mse_loss(call(model, res.at(t), res.buffers, qx, step=t), qy) for t in sorted(keep))
    wrt = list(model.parameters()) + list(rule.parameters())
    grads = torch.autograd.grad(total, wrt, allow_unused=True)
    return total, [torch.zeros_like(p) if g is None else g for p, g in zip(wrt, grads)], res


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("checkpoint", [1, 2, 5])
def test_checkpointed_loop_gives_the_plain_loops_gradients_losses_and_buffers(first_order, checkpoint):
    # per-step BN with running statistics, a learned per-step LR (a rule parameter read inside the
    # recomputed segments), a fixed (meta-learned, not adapted) layer and a stateful chained rule
    model, data = _bn_net(1), _data(2)
    names = ["0.weight", "0.bias", "4.weight", "4.bias"]  # the BN affine parameters stay fixed
    out = {}
    for ck in (0, checkpoint):
        rule = Chain(_Scale(1.5), SGD(names, 0.2, steps=4, learnable=True, dtype=torch.float64))
        with torch.no_grad():
            rule.rules[1].lrs.add_(torch.linspace(0, 0.1, 16, dtype=torch.float64).reshape(4, 4))
        out[ck] = _msl_meta_grads(model, rule, data, steps=5, first_order=first_order, checkpoint=ck, keep={2, 5},
                                  names=names)
    (l0, g0, r0), (l1, g1, r1) = out[0], out[checkpoint]
    assert abs(l0.item() - l1.item()) < 1e-12
    assert all(g.abs().sum() > 0 for g in g0)  # every meta-parameter gets a gradient (none is silently cut)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, atol=1e-10, rtol=0)
    assert torch.equal(r0.losses, r1.losses)
    assert all(torch.equal(r0.buffers[k], r1.buffers[k]) for k in r0.buffers)
    assert r1.state["0"]["count"].item() == 5
    assert [p is None for p in r1.params] == [False, True, False, True, True, False]


def test_checkpoint_replays_dropout_draws_and_the_forward_time_module_flags():
    model, data = _bn_net(3, dropout=0.3), _data(4)
    grads = []
    for ck in (0, 2):
        torch.manual_seed(7)  # dropout draws from the global RNG; the recomputation must replay them
        params, buffers = split_state(model)
        names = list(params)
        res = inner_loop(model, params, buffers, data[0], data[1], loss_fn=F.mse_loss, steps=4,
                         rule=_sgd(names, 0.1), names=names, checkpoint=ck)
        loss = F.mse_loss(call(model, res.at(4), res.buffers, data[2], step=4), data[3])
        model.eval()  # backward (and so the recomputation) now runs with other flags: they must not matter
        grads.append(torch.autograd.grad(loss, list(params.values())))
        model.train()
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-10, rtol=0)


class _Held:
    """What the counting pack hook stores instead of a tensor (weakly tracked to see what the graph keeps)."""

    __slots__ = ("t", "__weakref__")

    def __init__(self, t):
        self.t = t


def _bytes_kept_by_graph(model, *, steps, checkpoint):
    """Bytes of distinct storages the autograd graph holds after the inner loop and a query forward."""
    import weakref

    held = weakref.WeakSet()

    def pack(t):
        h = _Held(t)
        held.add(h)
        return h

    sx, sy, qx, qy = _data(5, n=64)
    params, buffers = split_state(model)
    names = list(params)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda h: h.t):
        res = inner_loop(model, params, buffers, sx, sy, loss_fn=F.mse_loss, steps=steps, rule=_sgd(names, 0.1),
                         names=names, keep=(), checkpoint=checkpoint)
        loss = F.mse_loss(call(model, res.at(steps), res.buffers, qx, step=steps), qy)
    kept = {h.t.untyped_storage().data_ptr(): h.t.untyped_storage().nbytes() for h in held}
    del loss, res
    return sum(kept.values())


def test_checkpointed_graph_grows_by_one_parameter_copy_per_segment():
    model = _bn_net(6)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    plain = _bytes_kept_by_graph(model, steps=8, checkpoint=0) - _bytes_kept_by_graph(model, steps=2, checkpoint=0)
    ckpt = _bytes_kept_by_graph(model, steps=8, checkpoint=2) - _bytes_kept_by_graph(model, steps=2, checkpoint=2)
    # 3 more segments: their input parameters are all the graph keeps of them
    assert 0 < ckpt <= 3 * param_bytes
    # the plain loop keeps every step's activations and double-backward graph (64 examples x 6 units...)
    assert plain > 6 * param_bytes


def test_keep_and_checkpoint_arguments_and_where_checkpointing_cannot_run():
    model, (sx, sy, _, _) = _net(7), _data(8)
    params, _ = split_state(model)
    names = list(params)
    kw = dict(loss_fn=F.mse_loss, steps=3, rule=_sgd(names, 0.1), names=names)
    res = inner_loop(model, params, {}, sx, sy, keep=[1], **kw)
    assert [p is None for p in res.params] == [False, False, True, False]  # input and last step always kept
    with pytest.raises(FewshotError, match="parameters after 2 updates were not kept"):
        res.at(2)
    with pytest.raises(ConfigError, match=r"keep must name steps in 0..3"):
        inner_loop(model, params, {}, sx, sy, keep=[4], **kw)
    with pytest.raises(ConfigError, match="checkpoint must be"):
        inner_loop(model, params, {}, sx, sy, checkpoint=-1, **kw)
    with torch.no_grad():  # evaluation: nothing to recompute, the plain loop runs
        a = inner_loop(model, params, {}, sx, sy, checkpoint=1, **kw)
        b = inner_loop(model, params, {}, sx, sy, **kw)
    assert all(torch.equal(a.at(3)[n], b.at(3)[n]) for n in names)

    # a learnable tensor only the loss function knows: the recomputed segment could not pass it its
    # gradient, so the backward refuses instead of silently dropping that part of the meta-gradient
    temperature = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    hidden = dict(kw, loss_fn=lambda out, target: F.mse_loss(out * temperature, target))
    res = inner_loop(model, params, {}, sx, sy, checkpoint=2, **hidden)
    with pytest.raises(ConfigError, match=r"checkpoint_steps: the inner loop reads a tensor \(\) that requires grad"):
        torch.autograd.grad(res.at(3)["0.weight"].sum(), [params["0.weight"]])

    def one(x, y):
        return inner_loop(model, params, {}, x, y, checkpoint=1, **kw).losses

    with pytest.raises(ConfigError, match="cannot run inside torch.func transforms"):
        torch.func.vmap(one)(sx.unsqueeze(0), sy.unsqueeze(0))

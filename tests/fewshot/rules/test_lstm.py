"""The meta-learner LSTM rule (Ravi & Larochelle): hand computation, nn.LSTMCell equality, init,
vmap."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from fewshot.errors import ConfigError
from fewshot.functional import InnerLoop, split_state
from fewshot.rules import LSTMMetaRule, apply_updates, lstm_cell


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _rule(hidden=3, seed=0, names=("0.weight", "0.bias"), spread=1.0):
    """A float64 rule whose weights are all of order one, so every gate matters in the
    comparison."""
    rule = LSTMMetaRule(list(names), hidden=hidden, seed=seed, dtype=torch.float64)
    with torch.no_grad():
        for p in rule.parameters():
            p.copy_(
                torch.rand(p.shape, generator=_gen(seed + p.numel()),
                           dtype=torch.float64) * 2 * spread - spread)
    return rule


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def _pre(x, p=10.0):
    """The preprocessing formula, by hand: (log|x|/p, sign x) if |x| >= e^-p, else (-1, e^p x)."""
    if abs(x) >= math.exp(-p):
        return [math.log(abs(x)) / p, math.copysign(1.0, x) if x != 0 else 0.0]
    return [-1.0, math.exp(p) * x]


def _hand_step(rule, grad, loss, theta, state):
    """One step of the two-layer meta-learner for plain Python lists, gate by gate."""
    w = {k: v.tolist() for k, v in rule.named_parameters()}
    hid = rule.hidden
    new = {"h": [], "c": [], "f": [], "i": []}
    out = []
    for k in range(len(grad)):
        x = _pre(grad[k]) + _pre(loss)
        h_prev, c_prev = state["h"][k], state["c"][k]
        pre = [sum(w["weight_ih"][r][j] * x[j] for j in range(4)) + w["bias_ih"][r]
               + sum(w["weight_hh"][r][j] * h_prev[j] for j in range(hid)) + w["bias_hh"][r]
               for r in range(4 * hid)]
        gi = [_sig(v) for v in pre[:hid]]
        gf = [_sig(v) for v in pre[hid:2 * hid]]
        gg = [math.tanh(v) for v in pre[2 * hid:3 * hid]]
        go = [_sig(v) for v in pre[3 * hid:]]
        c = [gf[j] * c_prev[j] + gi[j] * gg[j] for j in range(hid)]
        h = [go[j] * math.tanh(c[j]) for j in range(hid)]
        wf, wi = w["forget_weight"], w["input_weight"]
        f = _sig(sum(wf[j] * h[j] for j in range(hid)) + wf[hid] * theta[k]
                 + wf[hid + 1] * state["f"][k]
                 + w["forget_bias"][0])
        i = _sig(sum(wi[j] * h[j] for j in range(hid)) + wi[hid] * theta[k]
                 + wi[hid + 1] * state["i"][k]
                 + w["input_bias"][0])
        out.append(f * theta[k] - i * grad[k])  # the paper's cell update
        for key, v in (("h", h), ("c", c), ("f", f), ("i", i)):
            new[key].append(v)
    return out, new


def test_two_steps_match_a_hand_computation():
    torch.manual_seed(0)  # test-only module init
    model = nn.Sequential(nn.Linear(2, 1)).double()
    x = torch.randn(4, 2, generator=_gen(1), dtype=torch.float64)
    y = torch.randn(4, 1, generator=_gen(2), dtype=torch.float64)
    rule = _rule()
    names = ["0.weight", "0.bias"]
    params, buffers = split_state(model)
    res = InnerLoop(model, rule, names, F.mse_loss).run(params, buffers, x, y, steps=2)

    theta = torch.cat([params[n].reshape(-1) for n in names]).tolist()
    n = len(theta)
    state = {"h": [[0.0] * 3 for _ in range(n)], "c": [[0.0] * 3 for _ in range(n)], "f": [0.0] * n,
             "i": [0.0] * n}
    for t in range(2):
        cur = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        loss = F.mse_loss(x @ cur[:2].unsqueeze(1) + cur[2], y)
        grad = torch.autograd.grad(loss, cur)[0].tolist()
        theta, state = _hand_step(rule, grad, loss.item(), theta, state)
        got = torch.cat([res.params[t + 1][nm].reshape(-1) for nm in names])
        assert torch.allclose(got, torch.tensor(theta, dtype=torch.float64), rtol=0, atol=1e-13), t
    for key in ("h", "c", "f", "i"):
        assert torch.allclose(res.state[key], torch.tensor(state[key], dtype=torch.float64),
                              atol=1e-13), key
    # the gates were far from saturation, so the comparison exercised every one of them
    assert 0.05 < res.state["f"].min() and res.state["f"].max() < 0.95
    assert 0.05 < res.state["i"].min() and res.state["i"].max() < 0.95


def test_adding_the_update_gives_the_cell_formula():
    rule = LSTMMetaRule(["w"], seed=3, dtype=torch.float64)
    theta = torch.randn(50, generator=_gen(4), dtype=torch.float64)
    scale = 10.0 ** torch.randint(-6, 2, (50,), generator=_gen(6))
    grad = torch.randn(50, generator=_gen(5), dtype=torch.float64) * scale
    state = rule.init({"w": theta})
    updates, new = rule({"w": grad}, state, {"w": theta}, step=0,
                        loss=torch.tensor(0.7, dtype=torch.float64))
    direct = new["f"] * theta - new["i"] * grad
    # exact in real arithmetic; in floats one more rounding (a few ulps of theta)
    atol = 4e-16 * theta.abs().max().item()
    assert torch.allclose(apply_updates({"w": theta}, updates)["w"], direct, rtol=0, atol=atol)


def test_lstm_cell_equals_torch_lstmcell_and_batches_under_vmap():
    torch.manual_seed(0)  # test-only module init
    cell = nn.LSTMCell(4, 5).double()
    x = torch.randn(3, 7, 4, generator=_gen(1), dtype=torch.float64)
    h = torch.randn(3, 7, 5, generator=_gen(2), dtype=torch.float64)
    c = torch.randn(3, 7, 5, generator=_gen(3), dtype=torch.float64)
    ws = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    for b in range(3):
        ref_h, ref_c = cell(x[b], (h[b], c[b]))
        got_h, got_c = lstm_cell(x[b], h[b], c[b], *ws)
        assert torch.allclose(got_h, ref_h, atol=1e-14) and torch.allclose(got_c, ref_c, atol=1e-14)
    vh, vc = vmap(lambda a, b_, c_: lstm_cell(a, b_, c_, *ws))(x, h, c)
    ref = [cell(x[b], (h[b], c[b])) for b in range(3)]
    assert torch.allclose(vh, torch.stack([r[0] for r in ref]), atol=1e-14)
    assert torch.allclose(vc, torch.stack([r[1] for r in ref]), atol=1e-14)
    # the rule's layer-1 parameters have nn.LSTMCell's names and shapes
    rule = LSTMMetaRule(["w"], hidden=5)
    fresh = nn.LSTMCell(4, 5)
    fresh.load_state_dict({k: v for k, v in rule.state_dict().items() if k in fresh.state_dict()})


def test_rule_under_vmap_equals_per_task_calls():
    rule = _rule(names=("w",), spread=0.5)
    theta = torch.randn(3, 6, generator=_gen(1), dtype=torch.float64)
    grad = torch.randn(3, 6, generator=_gen(2), dtype=torch.float64)
    loss = torch.rand(3, generator=_gen(3), dtype=torch.float64)

    def two_steps(th, g, lo):
        state = rule.init({"w": th})
        out = []
        for t in range(2):
            up, state = rule({"w": g * (t + 1)}, state, {"w": th}, step=t, loss=lo)
            th = th + up["w"]
            out.append(th)
        return torch.stack(out), state["c"]

    batched = vmap(two_steps)(theta, grad, loss)
    for b in range(3):
        single = two_steps(theta[b], grad[b], loss[b])
        assert torch.allclose(batched[0][b], single[0], atol=1e-14)
        assert torch.allclose(batched[1][b], single[1], atol=1e-14)


def test_initialisation_is_seeded_in_the_paper_ranges_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    a, b, c = LSTMMetaRule(["w"], seed=7), LSTMMetaRule(["w"], seed=7), LSTMMetaRule(["w"], seed=8)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.weight_ih, c.weight_ih) and not torch.equal(a.forget_bias,
                                                                         c.forget_bias)
    assert 4.0 <= a.forget_bias.item() <= 5.0 and -5.0 <= a.input_bias.item() <= -4.0
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "forget_weight", "input_weight"):
        w = getattr(a, name)
        assert w.abs().max() <= 0.01 and w.abs().max() > 0.005, name  # U(-0.01, 0.01), not all zero
    assert a.weight_ih.shape == (80, 4) and a.weight_hh.shape == (80,
                                                                  20) and a.forget_weight.shape == (
                                                                      22,)
    state = a.init({"w": torch.zeros(3, 2)})
    # f_0 = i_0 = 0, zero LSTM state
    assert all(torch.equal(v, torch.zeros_like(v)) for v in state.values())
    assert state["h"].shape == (6, 20) and state["f"].shape == (6,)


def test_gradient_and_loss_inputs_carry_no_graph():
    rule = _rule(names=("w",), spread=0.5)
    theta = torch.randn(5, generator=_gen(1), dtype=torch.float64, requires_grad=True)
    grad = (theta ** 2).clone()  # a "gradient" that depends on theta
    loss = (theta ** 3).sum()
    up, _ = rule({"w": grad}, rule.init({"w": theta}), {"w": theta}, step=0, loss=loss)
    g_default = torch.autograd.grad(up["w"].sum(), theta)[0]
    const = {"w": grad.detach()}
    up2, _ = rule(const, rule.init({"w": theta}), {"w": theta}, step=0, loss=loss.detach())
    assert torch.equal(g_default, torch.autograd.grad(up2["w"].sum(), theta)[0])
    rule.detach_inputs = False
    up3, _ = rule({"w": grad}, rule.init({"w": theta}), {"w": theta}, step=0, loss=loss)
    assert not torch.allclose(g_default, torch.autograd.grad(up3["w"].sum(), theta)[0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden=0), "hidden must be >= 1, got 0"),
    (dict(hidden=2.5), "hidden must be an integer, got 2.5"),
    (dict(p=0.0), r"preprocessing p must be a finite number > 0 \(the paper uses 10\), got 0.0"),
    (dict(init_range=-1.0),
     r"LSTM meta-learner init_range must be a finite number >= 0 .*, got -1.0"),
    (dict(forget_bias=(5.0, 4.0)),
     r"LSTM meta-learner forget_bias range must be two finite numbers \(low, high\) "
     r"with low <= high, got \(5.0, 4.0\)")])
def test_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        LSTMMetaRule(["w"], **kwargs)
    with pytest.raises(ConfigError, match="at least one parameter"):
        LSTMMetaRule([])

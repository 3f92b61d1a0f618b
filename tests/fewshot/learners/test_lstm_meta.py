"""The LSTM meta-learner (Ravi & Larochelle): meta-gradients, no graph through the gradients, loop
== vmap, config and registry, learning on Omniglot."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

import fewshot
from fewshot.errors import ConfigError
from fewshot.functional import split_state
from fewshot.learners import LSTMMetaConfig, LSTMMetaLearner, build_learner, learner_config
from fewshot.nn import Conv4
from fewshot.rules import LSTMMetaRule
from tests.fewshot.learners.tasks import cls_batch as _cls_batch
from tests.fewshot.learners.tasks import gen as _gen


def _conv(seed=0, bn_steps=1):
    torch.manual_seed(seed)  # test-only module init
    return Conv4(1, 3, hidden=4, image_size=8, blocks=2, bn_steps=bn_steps).double()


def _lively(learner, seed=0):
    """Gates away from their saturated start (f ~ 0.99, i ~ 0.01), so every path carries signal."""
    with torch.no_grad():
        for p in learner.rule.parameters():
            p.copy_(torch.rand(p.shape, generator=_gen(seed + p.numel()), dtype=p.dtype) - 0.5)
    return learner


def _meta_grads(learner, batch):
    out = learner.meta_loss(batch)
    params = list(learner.parameters())
    grads = torch.autograd.grad(out.loss, params, allow_unused=True)
    return out, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def test_registry_exports_and_defaults():
    assert fewshot.LSTMMetaLearner is LSTMMetaLearner and fewshot.LSTMMetaConfig is LSTMMetaConfig
    learner = build_learner("lstm-meta", _conv(), {"inner_steps": 3, "seed": 4})
    assert isinstance(learner, LSTMMetaLearner) and isinstance(learner.rule, LSTMMetaRule)
    cfg = learner_config("lstm-meta")
    assert (cfg.first_order and cfg.adapt_norm and cfg.hidden == 20 and cfg.p == 10.0
            and cfg.bn_mode == "transductive")
    # every trainable parameter (batch-norm scale/shift included) is in the LSTM's cell state
    assert learner.names == [n for n, _ in learner.model.named_parameters()]
    # the LSTM's initial weights come from the config's seed
    again = build_learner("lstm-meta", _conv(), {"inner_steps": 3, "seed": 4})
    other = build_learner("lstm-meta", _conv(), {"inner_steps": 3, "seed": 5})
    assert torch.equal(learner.rule.weight_ih, again.rule.weight_ih)
    assert not torch.equal(learner.rule.weight_ih, other.rule.weight_ih)
    assert learner.rule.weight_ih.dtype == torch.float64


@pytest.mark.parametrize("kwargs, match", [(dict(first_order=False), "first_order must be True"),
                                           (dict(hidden=0), "hidden"), (dict(p=-1.0), "p must be"),
                                           (dict(inner_steps=0), "inner_steps")])
def test_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LSTMMetaConfig(**kwargs)


def _hand_pre(v, p=10.0):
    """Andrychowicz et al.'s preprocessing, written out: (log|v|/p, sign v) if |v| >= e^-p, else
    (-1, e^p v)."""
    big = v.abs() >= math.exp(-p)
    return torch.stack(
        (torch.where(big, torch.log(v.abs().clamp_min(math.exp(-p))) / p, torch.full_like(v, -1.0)),
                        torch.where(big, torch.sign(v), v * math.exp(p))), dim=-1)


def _hand_lstm_adapt(learner, x, y, steps):
    """Ravi & Larochelle's update unrolled by hand: torch's own ``nn.LSTMCell`` as layer 1 (loaded
    with the rule's weights), the two gates and ``theta_t = f_t * theta_{t-1} - i_t * grad_t`` over
    the flattened parameters (no fewshot code)."""
    rule, model = learner.rule, learner.model
    hid = rule.hidden
    cell = torch.nn.LSTMCell(4, hid).double()
    cell.load_state_dict(
        {k: getattr(rule, k).detach() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    names = [n for n, _ in model.named_parameters()]
    shapes = [q.shape for _, q in model.named_parameters()]
    theta = torch.cat([q.detach().reshape(-1) for _, q in model.named_parameters()])
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    n = theta.numel()
    h, c = torch.zeros(n, hid, dtype=torch.float64), torch.zeros(n, hid, dtype=torch.float64)
    f, i = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)  # f_0 = i_0 = 0
    wf, wi = rule.forget_weight.detach(), rule.input_weight.detach()
    bf, bi = rule.forget_bias.detach(), rule.input_bias.detach()
    for _ in range(steps):
        leaf = theta.clone().requires_grad_()
        params = dict(
            zip(names,
                [t.reshape(s) for t, s in zip(leaf.split([s.numel() for s in shapes]), shapes)]))
        loss = F.cross_entropy(torch.func.functional_call(model, {**params, **buffers}, (x,)), y)
        (grad,) = torch.autograd.grad(loss, [leaf])
        with torch.no_grad():
            inputs = torch.cat((_hand_pre(grad), _hand_pre(loss.reshape(1)).expand(n, 2)), dim=-1)
            h, c = cell(inputs, (h, c))
            f = torch.sigmoid(h @ wf[:hid] + wf[hid] * theta + wf[hid + 1] * f + bf)
            i = torch.sigmoid(h @ wi[:hid] + wi[hid] * theta + wi[hid + 1] * i + bi)
            theta = f * theta - i * grad
    return dict(
        zip(names,
            [t.reshape(s) for t, s in zip(theta.split([s.numel() for s in shapes]), shapes)]))


def test_adapt_is_the_papers_update_on_all_parameters():
    learner = _lively(LSTMMetaLearner(_conv(1), LSTMMetaConfig(inner_steps=2)))
    t = _cls_batch(2).task(0)
    params, _ = split_state(learner.model)
    with torch.no_grad():
        got = learner.adapt(t.support_x, t.support_y).params
    ref = _hand_lstm_adapt(learner, t.support_x, t.support_y, steps=2)
    assert set(got) == set(params) == set(ref)
    for name in params:
        # the rule adds the update (f - 1) theta - i grad: the paper's formula up to one rounding
        assert torch.allclose(got[name], ref[name], rtol=0, atol=1e-12), name
        assert not torch.allclose(got[name], params[name], rtol=0, atol=1e-6), name


def test_meta_gradient_reaches_every_lstm_weight_and_the_initial_cell_state():
    learner = _lively(LSTMMetaLearner(_conv(3), LSTMMetaConfig(inner_steps=2)))
    _, grads = _meta_grads(learner, _cls_batch(4))
    for (name, _), g in zip(learner.named_parameters(), grads):
        assert g.abs().max() > 0, name
    names = {n for n, _ in learner.named_parameters()}
    assert {f"rule.{n}"
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "forget_weight",
                      "input_weight",
                                  "forget_bias", "input_bias")} <= names


def test_no_meta_gradient_flows_through_the_support_gradients():
    base, batch = _conv(5), _cls_batch(6)

    def grads(detach_in_loop, detach_in_rule):
        learner = _lively(LSTMMetaLearner(copy.deepcopy(base), LSTMMetaConfig(inner_steps=2)))
        # bypasses validation on purpose: test the rule's own cut
        learner.config.first_order = detach_in_loop
        learner.rule.detach_inputs = detach_in_rule
        return _meta_grads(learner, batch)[1]

    reference = grads(True, True)          # gradients detached explicitly by the inner loop as well
    # second-order gradients reach the rule, which detaches them
    rule_only = grads(False, True)
    through = grads(False, False)          # differentiating through the gradients (not the paper)
    for a, b in zip(reference, rule_only):
        assert torch.allclose(a, b, rtol=0, atol=1e-14)
    assert max((a - b).abs().max().item() for a, b in zip(reference, through)) > 1e-6


CONFIGS = {
    "plain": dict(inner_steps=2),
    "running_bn": dict(inner_steps=2, bn_mode="running"),
    "per_step_bn_msl": dict(inner_steps=3, msl=True, per_step_bn=True, bn_mode="running"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_loop_and_vmap_give_the_same_numbers(name):
    base, batch = _conv(7), _cls_batch(8)
    results = {}
    for batching in ("loop", "vmap"):
        learner = _lively(
            LSTMMetaLearner(copy.deepcopy(base), LSTMMetaConfig(task_batching=batching,
                                                                              **CONFIGS[
                                                                                  name]))).train()
        out, grads = _meta_grads(learner, batch)
        results[batching] = (out, grads, {k: v.clone() for k, v in learner.model.named_buffers()},
                             learner.eval().evaluate(batch))
    (lo, lg, lb, le), (vo, vg, vb, ve) = results["loop"], results["vmap"]
    assert lo.loss.item() == pytest.approx(vo.loss.item(), abs=1e-12)
    assert all(torch.allclose(a, b, atol=1e-11) for a, b in zip(lg, vg))
    assert all(torch.allclose(lb[k], vb[k], atol=1e-12) for k in lb)
    assert all(torch.allclose(le[k], ve[k], atol=1e-12) for k in le)


def test_state_dict_round_trip():
    learner = _lively(LSTMMetaLearner(_conv(9), LSTMMetaConfig(inner_steps=2)))
    fresh = LSTMMetaLearner(_conv(10), LSTMMetaConfig(inner_steps=2, seed=3))
    fresh.load_state_dict(learner.state_dict())
    batch = _cls_batch(11)
    a, b = learner.eval().evaluate(batch), fresh.eval().evaluate(batch)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_lstm_meta_learns_omniglot_5way_1shot(omniglot_root, one_thread):
    from episodes import EpisodeSampler, load_split

    train = load_split("omniglot", "train", root=omniglot_root)
    val = load_split("omniglot", "val", root=omniglot_root)
    batch = EpisodeSampler(val, ways=5, shots=1, queries=5, seed=1).sample(100)
    acc = {}
    for name in ("untrained", "lstm-meta", "maml"):
        torch.manual_seed(0)  # test-only module init: the same initial weights for all three
        extra = {"inner_lr": 0.4, "first_order": True} if name == "maml" else {}
        learner = build_learner("maml" if name == "maml" else "lstm-meta",
                                Conv4(1, 5, hidden=8, pool=False),
                                {"inner_steps": 3, **extra})
        if name != "untrained":
            opt = torch.optim.Adam(learner.parameters(), 1e-2)
            tasks = EpisodeSampler(train, ways=5, shots=1, queries=5, seed=0)
            for _ in range(150):
                out = learner.meta_loss(tasks.sample(4))
                opt.zero_grad()
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(learner.parameters(), 0.25)
                opt.step()
        acc[name] = learner.eval().evaluate(batch)["accuracy"].mean().item()
    print(f"lstm-meta omniglot 5w1s: {acc}")
    # measured: 0.68 against 0.218 untrained (its initial LSTM is small-step gradient descent) and
    # 0.649 for
    # a same-seed first-order MAML (3 steps of 0.4) with the same budget: the learned update is at
    # least as good
    assert acc["lstm-meta"] > 0.6 and acc["lstm-meta"] > acc["untrained"] + 0.35, acc
    assert acc["lstm-meta"] > acc["maml"] - 0.03, acc

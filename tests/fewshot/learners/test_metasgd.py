"""Meta-SGD: learn2learn oracle, alpha initialisation, per-element and per-step rates, config,
learning."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import ConfigError
from fewshot.learners import MetaSGD, MetaSGDConfig, build_learner, learner_config
from fewshot.nn import Conv4
from tests.fewshot.learners.tasks import gen as _gen
from tests.fewshot.learners.tasks import meta_train
from tests.fewshot.learners.tasks import reg_batch as _reg_batch


def _mlp(seed=0):
    torch.manual_seed(seed)  # test-only module init
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).double()


def _meta_grads(learner, batch):
    out = learner.meta_loss(batch)
    grads = torch.autograd.grad(out.loss, list(learner.parameters()), allow_unused=True)
    return out, [torch.zeros_like(p) if g is None else g
                 for p, g in zip(learner.parameters(), grads)]


# --------------------------------------------------------------------------- oracle
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_meta_gradients_match_learn2learn(learn2learn, steps, first_order, batching):
    model, batch, lr = _mlp(0), _reg_batch(1), 0.1
    learner = MetaSGD(copy.deepcopy(model), MetaSGDConfig(inner_steps=steps, alpha_init=(lr, lr),
                                                          first_order=first_order,
                                                          task_batching=batching))
    meta = learn2learn.algorithms.MetaSGD(model, lr=lr, first_order=first_order)
    # the same constant init as learn2learn's
    for ours, theirs in zip(learner.rule.alphas, meta.lrs):
        assert torch.equal(ours[0], theirs)
    with torch.no_grad():  # then distinct per-element rates, so a mix-up of elements would show
        for ours, theirs in zip(learner.rule.alphas, meta.lrs):
            ours.uniform_(0.02, 0.3, generator=_gen(2))
            theirs.copy_(ours[0])
    out, ours = _meta_grads(learner, batch)
    total = 0.0
    for i in range(len(batch)):
        t = batch.task(i)
        clone = meta.clone()
        for _ in range(steps):
            clone.adapt(F.mse_loss(clone(t.support_x), t.support_y))
        q = F.mse_loss(clone(t.query_x), t.query_y) / len(batch)
        q.backward()
        total += q.item()
    ref = [p.grad for p in model.parameters()] + [a.grad for a in meta.lrs]
    assert out.loss.item() == pytest.approx(total, abs=1e-12)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert torch.allclose(a.reshape(b.shape), b, atol=1e-10, rtol=0)
    assert all(a.grad.abs().max() > 0 for a in meta.lrs)


# --------------------------------------------------------------------------- alpha
def test_alpha_init_range_seed_and_dtype_without_touching_the_global_rng():
    model = _mlp(0)
    state = torch.get_rng_state()
    learner = MetaSGD(copy.deepcopy(model), MetaSGDConfig(seed=5))
    assert torch.equal(torch.get_rng_state(), state)
    alphas = list(learner.rule.alphas)
    assert [a.shape for a in alphas] == [(1, *p.shape) for p in model.parameters()]
    flat = torch.cat([a.flatten() for a in alphas])
    assert flat.min() >= 0.005 and flat.max() <= 0.1 and flat.std() > 0.01
    torch.manual_seed(123)  # a different global state changes nothing
    again = MetaSGD(copy.deepcopy(model), MetaSGDConfig(seed=5))
    assert all(torch.equal(a, b) for a, b in zip(alphas, again.rule.alphas))
    other = MetaSGD(copy.deepcopy(model), MetaSGDConfig(seed=6))
    assert not torch.equal(alphas[0], other.rule.alphas[0])
    single = MetaSGD(copy.deepcopy(model).float(), MetaSGDConfig(seed=5))
    assert all(a.dtype == torch.float32 and torch.equal(a, b.float())
               for a, b in zip(single.rule.alphas, alphas))


def test_one_step_is_theta_minus_alpha_times_grad_elementwise():
    learner = MetaSGD(_mlp(3), MetaSGDConfig())
    t = _reg_batch(4).task(0)
    model = learner.model
    grads = torch.autograd.grad(F.mse_loss(model(t.support_x), t.support_y),
                                list(model.parameters()))
    params = learner.adapt(t.support_x, t.support_y).params
    for (name, p), g, a in zip(model.named_parameters(), grads, learner.rule.alphas):
        assert torch.allclose(params[name], p - a[0] * g, atol=1e-14, rtol=0)


def test_per_step_alphas_are_used_at_their_step_and_the_last_one_after():
    learner = MetaSGD(_mlp(5), MetaSGDConfig(inner_steps=2, per_step_lr=True))
    alphas = list(learner.rule.alphas)
    assert all(a.shape[0] == 2 for a in alphas) and not torch.equal(alphas[0][0], alphas[0][1])
    t = _reg_batch(6).task(0)
    model, names = learner.model, [n for n, _ in learner.model.named_parameters()]
    current = dict(model.named_parameters())
    for step in range(3):  # step 2 reuses the step-1 rates
        out = torch.func.functional_call(model, current, (t.support_x,))
        grads = torch.autograd.grad(F.mse_loss(out, t.support_y), [current[n] for n in names])
        current = {n: current[n] - alphas[i][min(step, 1)] * g
                   for i, (n, g) in enumerate(zip(names, grads))}
        got = learner.adapt(t.support_x, t.support_y, steps=step + 1).params
        assert all(torch.allclose(got[n], current[n], atol=1e-13, rtol=0) for n in names), step


def test_alphas_are_meta_parameters_that_learn_and_round_trip():
    learner = MetaSGD(_mlp(7), MetaSGDConfig(inner_steps=2))
    ids = {id(p) for p in learner.parameters()}
    assert all(id(a) in ids for a in learner.rule.alphas)
    before = [a.detach().clone() for a in learner.rule.alphas]
    opt = torch.optim.Adam(learner.parameters(), 1e-2)
    learner.meta_loss(_reg_batch(8)).loss.backward()
    assert all(a.grad is not None and a.grad.abs().max() > 0 for a in learner.rule.alphas)
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(learner.rule.alphas, before))
    assert "rule.alphas.0" in learner.state_dict()
    fresh = MetaSGD(_mlp(9), MetaSGDConfig(inner_steps=2, seed=1))
    fresh.load_state_dict(learner.state_dict())
    batch = _reg_batch(10)
    assert torch.equal(fresh.eval().evaluate(batch)["mse"], learner.eval().evaluate(batch)["mse"])


def test_norm_affine_parameters_get_no_alpha_unless_adapted():
    model = Conv4(1, 3, hidden=4, image_size=8, blocks=2).double()
    learner = MetaSGD(copy.deepcopy(model))
    assert learner.rule.names == learner.names and all("features.1." not in n
                                                       for n in learner.names)
    assert len(learner.rule.alphas) == len(learner.names) == 6
    assert len(MetaSGD(copy.deepcopy(model), MetaSGDConfig(adapt_norm=True)).rule.alphas) == 10


# --------------------------------------------------------------------------- config and registry
@pytest.mark.parametrize("alpha_init", [(0.1, 0.005), (0.1,), (0.0, float("nan")), ("a", "b"),
                                        (0.0, float("inf")), 0.1, "ab", (True, 1.0)])
def test_bad_alpha_init(alpha_init):
    with pytest.raises(ConfigError, match="alpha_init"):
        MetaSGDConfig(alpha_init=alpha_init)


def test_registry_and_config_conversion():
    cfg = learner_config("metasgd",
                         {"alpha_init": [0.2, 0.2], "per_step_lr": True, "inner_steps": 2})
    assert cfg == MetaSGDConfig(alpha_init=(0.2, 0.2), per_step_lr=True, inner_steps=2)
    learner = build_learner("metasgd", _mlp(0), cfg)
    assert isinstance(learner, MetaSGD) and learner.rule.alphas[0].shape[0] == 2
    assert torch.all(learner.rule.alphas[0] == 0.2)
    with pytest.raises(ConfigError, match="inner_lr"):
        build_learner("metasgd", _mlp(0), {"inner_lr": 0.1})


# --------------------------------------------------------------------------- learning


def test_metasgd_learns_sinusoid_regression(one_thread):
    from episodes import SinusoidTasks
    from fewshot.nn import MLP

    torch.manual_seed(0)  # test-only module init
    model = MLP(1, 1, hidden=(20, 20))
    learner = build_learner("metasgd", model, {"task_batching": "vmap"})
    opt = torch.optim.Adam(learner.parameters(), 3e-3)
    tasks, val = SinusoidTasks(5, 10, seed=0), SinusoidTasks(5, 10, seed=1).sample(200)
    learner.eval()
    post_before = learner.evaluate(val)["mse"].mean().item()
    learner.train()
    meta_train(learner, tasks, 300, 10, opt)
    learner.eval()
    with torch.no_grad():
        pre = F.mse_loss(model(val.query_x), val.query_y).item()
    post = learner.evaluate(val)["mse"].mean().item()
    assert post < 0.6 * pre and post < 0.6 * post_before, (pre, post, post_before)

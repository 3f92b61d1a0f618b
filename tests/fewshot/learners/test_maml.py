"""MAML / FOMAML / MAML++: oracles (higher), loop == vmap, DA, MSL, LSLR, the registry, learning.

What every learner gets from the base (batch-norm modes, task checks, batching choice, write-back)
is tested in test_base.py, test_bn_forward.py, test_checks.py, test_batching.py and
test_config.py."""
import copy

import higher
import pytest
import torch
import torch.nn.functional as F

from fewshot.errors import ConfigError
from fewshot.learners import MAML, MAMLConfig, build_learner, learner_config
from fewshot.nn import Conv4
from tests.fewshot.learners.tasks import cls_batch as _cls_batch
from tests.fewshot.learners.tasks import conv as _conv
from tests.fewshot.learners.tasks import meta_grads as _meta_grads
from tests.fewshot.learners.tasks import meta_train
from tests.fewshot.learners.tasks import mlp as _mlp
from tests.fewshot.learners.tasks import reg_batch as _reg_batch


# --------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_meta_gradients_match_higher(first_order, batching):
    model, batch, steps, lr = _mlp(0), _reg_batch(1), 2, 0.3
    learner = MAML(copy.deepcopy(model),
                   MAMLConfig(inner_steps=steps, inner_lr=lr, first_order=first_order,
                                                    task_batching=batching))
    out, ours = _meta_grads(learner, batch)
    total, ref = 0.0, None
    for i in range(len(batch)):
        t = batch.task(i)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        fmodel = higher.monkeypatch(model, copy_initial_weights=False, track_higher_grads=True)
        diffopt = higher.optim.get_diff_optim(opt, model.parameters(), fmodel=fmodel,
                                              track_higher_grads=True)
        cb = (lambda gs: [g.detach() for g in gs]) if first_order else None
        for _ in range(steps):
            diffopt.step(F.mse_loss(fmodel(t.support_x), t.support_y), grad_callback=cb)
        q = F.mse_loss(fmodel(t.query_x), t.query_y) / len(batch)
        total += q.item()
        g = torch.autograd.grad(q, list(model.parameters()))
        ref = list(g) if ref is None else [a + b for a, b in zip(ref, g)]
    assert out.loss.item() == pytest.approx(total, abs=1e-12)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-10)


CONFIGS = {
    "maml": dict(inner_steps=2, inner_lr=0.1),
    "running_bn": dict(inner_steps=2, inner_lr=0.1, bn_mode="running"),
    "support_bn": dict(inner_steps=2, inner_lr=0.1, bn_mode="support", msl=True, per_step_bn=True),
    "mamlpp": dict(inner_steps=3, inner_lr=0.1, msl=True, learn_inner_lr=True, per_step_bn=True,
                   bn_mode="running"),
    "fomaml_adapt_norm": dict(inner_steps=1, inner_lr=0.1, first_order=True, adapt_norm=True),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_loop_and_vmap_give_the_same_numbers(name):
    base = _conv(3)
    batch = _cls_batch(4)
    results = {}
    for batching in ("loop", "vmap"):
        learner = MAML(copy.deepcopy(base),
                       MAMLConfig(task_batching=batching, **CONFIGS[name])).train()
        out, grads = _meta_grads(learner, batch, epoch=1)
        results[batching] = (out, grads, {k: v.clone() for k, v in learner.model.named_buffers()},
                             learner.eval().evaluate(batch))
    (lo, lg, lb, le), (vo, vg, vb, ve) = results["loop"], results["vmap"]
    assert abs(lo.loss.item() - vo.loss.item()) < 1e-10
    assert lo.metrics == pytest.approx(vo.metrics, abs=1e-10)
    assert max((a - b).abs().max().item() for a, b in zip(lg, vg)) < 1e-9
    assert max(g.abs().max().item() for g in lg) > 0
    for k in lb:
        assert torch.allclose(lb[k].double(), vb[k].double(), atol=1e-12), k
    for k in le:
        assert torch.allclose(le[k], ve[k], atol=1e-10)


@pytest.mark.parametrize("name", sorted(CONFIGS) + ["frozen_bn"])
def test_checkpoint_steps_on_conv4_gives_the_stored_loops_numbers(name):
    """Conv4 (native batch-norm kernels, double backward through them): recomputing each step
    (``checkpoint_steps=1``) gives the meta-gradients, buffers and metrics of storing every step.
    ``frozen_bn`` has the model in train mode but normalises with stored statistics: the backward
    (outside ``meta_loss``) must recompute with the flags the forward had."""
    config = CONFIGS.get(name, dict(inner_steps=3, inner_lr=0.1, bn_mode="frozen"))
    base, batch = _conv(5, bn_steps=4), _cls_batch(6)
    results = []
    for ck in (0, 1):
        learner = MAML(copy.deepcopy(base),
                       MAMLConfig(task_batching="loop", checkpoint_steps=ck, **config)).train()
        out, grads = _meta_grads(learner, batch, epoch=1)
        results.append((out, grads, {k: v.clone() for k, v in learner.model.named_buffers()}))
    (po, pg, pb), (co, cg, cb) = results
    assert abs(po.loss.item() - co.loss.item()) < 1e-12 and po.metrics == pytest.approx(co.metrics,
                                                                                        abs=1e-12)
    assert max(g.abs().max().item() for g in pg) > 0
    assert max((a - b).abs().max().item() for a, b in zip(pg, cg)) < 1e-10
    assert all(torch.equal(pb[k], cb[k]) for k in pb)


# --------------------------------------------------------------------------- schedules
def test_derivative_order_annealing_switches_from_first_to_second_order():
    base, batch = _mlp(5), _reg_batch(6)
    da = MAML(copy.deepcopy(base), MAMLConfig(inner_steps=2, first_order_epochs=2))
    fo = MAML(copy.deepcopy(base), MAMLConfig(inner_steps=2, first_order=True))
    so = MAML(copy.deepcopy(base), MAMLConfig(inner_steps=2))
    g_fo, g_so = _meta_grads(fo, batch)[1], _meta_grads(so, batch)[1]
    assert max((a - b).abs().max().item() for a, b in zip(g_fo, g_so)) > 1e-4
    for epoch, expected in ((0, g_fo), (1, g_fo), (2, g_so), (7, g_so)):
        g = _meta_grads(da, batch, epoch)[1]
        assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(g, expected)), epoch


def _hand_sgd_query_losses(model, t, *, lr, steps):
    """The query MSE after each of ``steps`` plain SGD steps on the support MSE, unrolled by hand
    (no fewshot code: ``functional_call`` and ``autograd.grad`` only)."""
    p = {n: q.detach() for n, q in model.named_parameters()}
    losses = []
    for _ in range(steps):
        p = {n: q.requires_grad_() for n, q in p.items()}
        loss = F.mse_loss(torch.func.functional_call(model, p, (t.support_x,)), t.support_y)
        grads = torch.autograd.grad(loss, list(p.values()))
        p = {n: (q - lr * g).detach() for (n, q), g in zip(p.items(), grads)}
        losses.append(
            F.mse_loss(torch.func.functional_call(model, p, (t.query_x,)), t.query_y).item())
    return losses


def test_msl_meta_loss_is_the_weighted_sum_of_per_step_query_losses():
    learner = MAML(_mlp(7), MAMLConfig(inner_steps=3, inner_lr=0.2, msl=True, msl_epochs=4))
    batch = _reg_batch(8)
    per_task = [_hand_sgd_query_losses(learner.model, batch.task(i), lr=0.2, steps=3)
                for i in range(len(batch))]
    # MAML++'s weights for N=3 steps annealed over E=4 epochs: 1/N - e/(N E) for the early steps,
    # the rest on
    # the last; after E epochs only the last step counts
    weights = {0: [1 / 3, 1 / 3, 1 / 3], 2: [1 / 6, 1 / 6, 2 / 3], 3: [1 / 12, 1 / 12, 5 / 6],
               4: [0, 0, 1],
               9: [0, 0, 1]}
    for epoch, w in weights.items():
        expected = sum(wi * q for losses in per_task for wi, q in zip(w, losses)) / len(batch)
        assert learner.meta_loss(batch, epoch=epoch).loss.item() == pytest.approx(expected,
                                                                                  abs=1e-12), epoch


def test_lslr_learning_rates_get_gradients_and_change():
    learner = MAML(_mlp(9), MAMLConfig(inner_steps=2, inner_lr=0.1, learn_inner_lr=True))
    assert any(p is learner.rule.lrs for p in learner.parameters())
    assert learner.rule.lrs.shape == (4, 2) and torch.all(learner.rule.lrs == 0.1)
    opt = torch.optim.Adam(learner.parameters(), 1e-2)
    learner.meta_loss(_reg_batch(10)).loss.backward()
    assert learner.rule.lrs.grad is not None and learner.rule.lrs.grad.abs().min() > 0
    opt.step()
    assert not torch.allclose(learner.rule.lrs, torch.full((4, 2), 0.1, dtype=torch.float64))
    # the adapted parameters use the per-tensor, per-step rates
    with torch.no_grad():
        learner.rule.lrs.copy_(torch.tensor([[0.1, 0.0], [0.2, 0.0], [0.3, 0.0], [0.4, 0.0]]))
    t = _reg_batch(11).task(0)
    params = learner.adapt(t.support_x, t.support_y, steps=1).params
    model = learner.model
    loss = F.mse_loss(model(t.support_x), t.support_y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    for (name, p), g, lr in zip(model.named_parameters(), grads, (0.1, 0.2, 0.3, 0.4)):
        assert torch.allclose(params[name], p - lr * g, atol=1e-12)
    plain = MAML(_mlp(9), MAMLConfig())
    assert all(p is not plain.rule.lrs
               for p in plain.parameters()) and "rule.lrs" in plain.state_dict()


def test_bad_inner_lr():
    with pytest.raises(ConfigError, match=r"^inner_lr must be a finite number >= 0, got -0\.1"):
        MAMLConfig(inner_lr=-0.1)


def test_registry():
    model = _mlp(0)
    assert build_learner("fomaml", copy.deepcopy(model)).config.first_order
    pp = build_learner("mamlpp", copy.deepcopy(model), {"inner_steps": 2})
    assert (pp.config.msl and pp.config.learn_inner_lr and pp.config.per_step_bn
            and pp.config.inner_steps == 2)
    assert build_learner("fomaml", copy.deepcopy(model),
                         MAMLConfig(inner_steps=3)).config.first_order
    assert learner_config("maml", {"inner_lr": 0.5}) == MAMLConfig(inner_lr=0.5)
    with pytest.raises(ConfigError, match="unknown learner"):
        build_learner("reptil", model)
    with pytest.raises(ConfigError, match="inner_lrr"):
        build_learner("maml", model, {"inner_lrr": 0.1})


# --------------------------------------------------------------------------- learning


@pytest.mark.slow
def test_maml_learns_sinusoid_regression(one_thread):
    from episodes import SinusoidTasks
    from fewshot.nn import MLP

    torch.manual_seed(0)  # test-only module init
    model = MLP(1, 1)
    learner = build_learner("maml", model,
                            {"inner_steps": 1, "inner_lr": 0.01, "task_batching": "vmap"})
    opt = torch.optim.Adam(learner.parameters(), 3e-3)
    tasks, val = SinusoidTasks(5, 10, seed=0), SinusoidTasks(5, 10, seed=1).sample(200)
    meta_train(learner, tasks, 1000, 10, opt)
    learner.eval()
    with torch.no_grad():
        pre = F.mse_loss(model(val.query_x), val.query_y).item()
    post = learner.evaluate(val, steps=1)["mse"].mean().item()
    assert post < 0.6 * pre, (pre, post)


@pytest.mark.slow
def test_maml_beats_chance_on_omniglot_5way_1shot(omniglot_root, one_thread):
    from episodes import EpisodeSampler, load_split

    train = load_split("omniglot", "train", root=omniglot_root)
    val = load_split("omniglot", "val", root=omniglot_root)
    torch.manual_seed(0)  # test-only module init
    learner = build_learner("maml", Conv4(1, 5, hidden=16), {"inner_steps": 1, "inner_lr": 0.4})
    batch = EpisodeSampler(val, ways=5, shots=1, queries=5, seed=1).sample(100)
    untrained = copy.deepcopy(learner).eval().evaluate(batch)["accuracy"].mean().item()
    opt = torch.optim.Adam(learner.parameters(), 3e-3)
    tasks = EpisodeSampler(train, ways=5, shots=1, queries=5, seed=0)
    meta_train(learner, tasks, 150, 4, opt)
    acc = learner.eval().evaluate(batch)["accuracy"].mean().item()
    # measured 0.728 (0.575 after 50 iterations, 0.68 after 100) against 0.253 untrained: a bar that
    # only
    # the last third of the run clears
    assert acc > 0.65 and acc > untrained + 0.35, (acc, untrained)



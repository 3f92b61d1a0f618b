"""Adam, RMSprop and momentum SGD as inner-loop rules, against torch.optim (first order), higher
(second order), finite differences (a dead ReLU unit, learned learning rates), and through the
learners' API."""
from __future__ import annotations

import copy

import higher
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from episodes import TaskBatch
from fewshot import MAML, MAMLConfig
from fewshot.config import apply_overrides
from fewshot.config.schema import TrainConfig
from fewshot.errors import ConfigError
from fewshot.functional import InnerLoop, split_state
from fewshot.rules import SGD, Adam, RMSprop, UpdateRule
from fewshot.rules import adam as adam_module
from fewshot.rules import rmsprop as rmsprop_module

# (our rule factory, torch.optim factory) with the same hyper-parameters
OPTIMIZERS = {
    "adam": (lambda n: Adam(n, 0.05, dtype=torch.float64), lambda p: torch.optim.Adam(p, lr=0.05)),
    "adam-betas-wd": (
        lambda n: Adam(n, 0.02, betas=(0.5, 0.8), eps=1e-3, weight_decay=0.1, dtype=torch.float64),
                      lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.5, 0.8), eps=1e-3,
                                                 weight_decay=0.1)),
    "rmsprop": (lambda n: RMSprop(n, 0.01, dtype=torch.float64),
                lambda p: torch.optim.RMSprop(p, lr=0.01)),
    "rmsprop-centered-momentum": (
        lambda n: RMSprop(n, 0.01, alpha=0.9, eps=1e-6, momentum=0.5, centered=True,
                          weight_decay=0.05,
                          dtype=torch.float64),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-6, momentum=0.5, centered=True,
                                      weight_decay=0.05)),
    "sgd-momentum": (lambda n: SGD(n, 0.1, momentum=0.9, dtype=torch.float64),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    "sgd-nesterov-wd": (
        lambda n: SGD(n, 0.1, momentum=0.8, nesterov=True, weight_decay=0.01, dtype=torch.float64),
                        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True,
                                                  weight_decay=0.01)),
    "sgd-dampening": (lambda n: SGD(n, 0.1, momentum=0.7, dampening=0.3, dtype=torch.float64),
                      lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.7, dampening=0.3)),
}


def _model(seed: int = 0, act: type[nn.Module] = nn.Tanh) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # test-only module init
        return nn.Sequential(nn.Linear(3, 8), act(), nn.Linear(8, 2)).double()


def _data(seed: int = 1, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, generator=g, dtype=torch.float64) for d in (3, 2, 3, 2))


def _ours(model: nn.Module, rule: UpdateRule, sx, sy, steps: int, first_order: bool):
    params, buffers = split_state(model)
    names = list(params)
    return InnerLoop(model, rule, names, F.mse_loss).run(
        params, buffers, sx, sy, steps=steps, first_order=first_order).at(steps)


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_first_order_steps_equal_torch_optim(kind):
    """k first-order inner steps give torch.optim's parameters (float64, 1e-12)."""
    make_rule, make_opt = OPTIMIZERS[kind]
    model = _model()
    sx, sy, _, _ = _data()
    steps = 6
    ours = _ours(model, make_rule(list(dict(model.named_parameters()))), sx, sy, steps,
                 first_order=True)
    ref = copy.deepcopy(model)
    opt = make_opt(ref.parameters())
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(ref(sx), sy).backward()
        opt.step()
    diff = max((ours[n] - p).abs().max().item() for n, p in ref.named_parameters())
    moved = max((ours[n] - p).abs().max().item() for n, p in model.named_parameters())
    assert diff <= 1e-12 and moved > 1e-3


def _dead_relu_setup():
    """A ReLU net whose hidden unit 0 is dead on every support and query input (its incoming weights
    and bias, and its outgoing weights, get exactly zero gradients at every inner step)."""
    model = _model(2, nn.ReLU)
    with torch.no_grad():
        model[0].weight[0] = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
        model[0].bias[0] = -50.0
    sx, sy, qx, qy = _data(3)
    return model, sx, sy, qx, qy


def _meta_loss(model, rule, sx, sy, qx, qy, steps=3):
    adapted = _ours(model, rule, sx, sy, steps, first_order=False)
    return F.mse_loss(torch.func.functional_call(model, adapted, (qx,)), qy)


@pytest.mark.parametrize("make", [lambda n: Adam(n, 0.05, dtype=torch.float64),
                                  lambda n: RMSprop(n, 0.01, centered=True, momentum=0.5,
                                                    dtype=torch.float64)],
                         ids=["adam", "rmsprop-centered"])
def test_second_order_meta_gradients_are_finite_at_a_dead_relu_unit(make, monkeypatch):
    model, sx, sy, qx, qy = _dead_relu_setup()
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    grads = torch.autograd.grad(_meta_loss(model, make(names), sx, sy, qx, qy), params)
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    # the oracle: central differences of the meta-loss (the unit stays dead under small
    # perturbations)
    h = 1e-6
    for p, g in zip(params, grads):
        for i in range(p.numel()):
            with torch.no_grad():
                flat = p.view(-1)
                flat[i] += h
                up = _meta_loss(model, make(names), sx, sy, qx, qy).item()
                flat[i] -= 2 * h
                down = _meta_loss(model, make(names), sx, sy, qx, qy).item()
                flat[i] += h
            assert g.view(-1)[i].item() == pytest.approx((up - down) / (2 * h), abs=1e-6)
    # the plain square root really is NaN here (what higher and TorchOpt give): the test exercises
    # the case
    for module in (adam_module, rmsprop_module):
        monkeypatch.setattr(module, "safe_sqrt", torch.sqrt)
    naive = torch.autograd.grad(_meta_loss(model, make(names), sx, sy, qx, qy), params)
    assert any(bool(torch.isnan(g).any()) for g in naive)


def _higher_adapt(model, opt, sx, sy, qx, qy, steps):
    with higher.innerloop_ctx(model, opt, copy_initial_weights=False) as (fmodel, diffopt):
        for _ in range(steps):
            diffopt.step(F.mse_loss(fmodel(sx), sy))
        loss = F.mse_loss(fmodel(qx), qy)
        return dict(zip([n for n, _ in model.named_parameters()], fmodel.parameters())), loss


@pytest.mark.parametrize("kind", ["adam", "sgd-momentum", "sgd-nesterov"])
def test_adapted_parameters_and_second_order_meta_gradients_equal_highers(kind):
    """higher's innerloop optimizers, second order.  higher's Adam adds eps before the bias
    correction of sqrt(v) (the same eps weighs 1 / sqrt(1 - beta2**k) times more there), so Adam is
    compared with eps -> 0 (1e-30, far below float64's resolution of sqrt(v) here)."""
    model = _model(4)
    sx, sy, qx, qy = _data(5)
    names = [n for n, _ in model.named_parameters()]
    steps = 4
    if kind == "adam":
        rule: UpdateRule = Adam(names, 0.03, betas=(0.8, 0.95), eps=1e-30, dtype=torch.float64)
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=0.03,
                                                      betas=(0.8, 0.95), eps=1e-30)
    else:
        nesterov = kind == "sgd-nesterov"
        rule = SGD(names, 0.1, momentum=0.9, nesterov=nesterov, dtype=torch.float64)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov)
    adapted = _ours(model, rule, sx, sy, steps, first_order=False)
    loss = F.mse_loss(torch.func.functional_call(model, adapted, (qx,)), qy)
    ours = torch.autograd.grad(loss, list(model.parameters()))
    ref_adapted, ref_loss = _higher_adapt(model, opt, sx, sy, qx, qy, steps)
    ref = torch.autograd.grad(ref_loss, list(model.parameters()))
    assert max((adapted[n] - ref_adapted[n]).abs().max().item() for n in names) <= 1e-12
    assert max((a - b).abs().max().item() for a, b in zip(ours, ref)) <= 1e-10
    first = torch.autograd.grad(F.mse_loss(torch.func.functional_call(
        model, _ours(model, rule, sx, sy, steps, first_order=True), (qx,)), qy),
                                list(model.parameters()))
    # second order matters here
    assert max((a - b).abs().max().item() for a, b in zip(ours, first)) > 1e-6


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd"])
def test_learnable_per_tensor_lrs_get_the_finite_difference_gradient(optimizer):
    model = _model(6)
    sx, sy, qx, qy = _data(7)
    extra = {"inner_momentum": 0.9} if optimizer != "adam" else {}
    learner = MAML(model,
                   MAMLConfig(inner_steps=2, inner_lr=0.02, learn_inner_lr=True,
                              inner_optimizer=optimizer,
                                     task_batching="loop", **extra))
    lrs = learner.rule.lrs
    assert isinstance(lrs, nn.Parameter) and lrs.shape == (4, 2)
    batch = TaskBatch(sx[None], sy[None], qx[None], qy[None], ways=None)
    grad, = torch.autograd.grad(learner.meta_loss(batch).loss, [lrs])
    assert bool((grad != 0).all())
    h = 1e-6
    for i in range(lrs.numel()):
        with torch.no_grad():
            lrs.view(-1)[i] += h
            up = learner.meta_loss(batch).loss.item()
            lrs.view(-1)[i] -= 2 * h
            down = learner.meta_loss(batch).loss.item()
            lrs.view(-1)[i] += h
        assert grad.view(-1)[i].item() == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-8)


def test_a_rule_without_names_is_bound_to_the_learners_adapted_names():
    sx, sy, qx, qy = _data(8)
    batch = TaskBatch(sx[None], sy[None], qx[None], qy[None], ways=None)
    cfg = MAMLConfig(inner_steps=3, no_adapt=("0.",), task_batching="loop")
    unbound = Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    given = MAML(_model(), cfg, rule=unbound)
    assert given.rule.names == ["2.weight", "2.bias"] and given.rule.lrs.dtype == torch.float64
    # the learner bound a copy; the rule can be reused
    assert unbound.names == [] and not unbound.bound
    configured = MAML(_model(), MAMLConfig(inner_steps=3, no_adapt=("0.",), task_batching="loop",
                                           inner_optimizer="adam", inner_lr=0.01))
    a, b = given.meta_loss(batch).loss, configured.meta_loss(batch).loss
    assert a.item() == b.item()
    ga = torch.autograd.grad(a, list(given.model.parameters()))
    gb = torch.autograd.grad(b, list(configured.model.parameters()))
    assert all(torch.equal(x, y) for x, y in zip(ga, gb))
    with pytest.raises(ConfigError, match="updates 0.weight, which the learner does not adapt"):
        MAML(_model(), cfg, rule=Adam(["0.weight"], 0.01))
    with pytest.raises(ConfigError, match="rule must be a fewshot.rules.UpdateRule"):
        MAML(_model(), cfg, rule=torch.optim.Adam)  # type: ignore[arg-type]


def test_plain_sgd_keeps_its_state_and_numbers():
    model = _model()
    names = [n for n, _ in model.named_parameters()]
    assert SGD(names, 0.1).init(dict(model.named_parameters())) == {}
    sx, sy, _, _ = _data()
    plain = _ours(model, SGD(names, 0.1, dtype=torch.float64), sx, sy, 3, first_order=False)
    zero_momentum = _ours(model, SGD(lr=0.1).bind(names, sx), sx, sy, 3, first_order=False)
    assert all(torch.equal(plain[n], zero_momentum[n]) for n in names)


def test_bad_rule_settings_get_one_clear_error():
    for make, match in (
        (lambda: Adam(lr=0.1, betas=(0.9, 1.0)), r"Adam betas\[1\] must be a number in \[0, 1\)"),
                        (lambda: Adam(lr=0.1, betas=(0.9,)), "Adam betas must be two numbers"),
                        (lambda: Adam(lr=0.1, eps=0), "Adam eps must be a finite number > 0"),
                        (lambda: Adam(), r"Adam needs a learning rate: e.g. Adam\(lr=0.01\)"),
                        (lambda: RMSprop(lr=0.1, alpha=1.0),
                         r"RMSprop alpha must be a number in \[0, 1\)"),
                        (lambda: RMSprop(lr=-1.0), "RMSprop lr must be a finite number >= 0"),
                        (lambda: SGD(lr=0.1, nesterov=True), "SGD nesterov needs momentum > 0"),
                        (lambda: SGD(lr=0.1, momentum=1.5),
                         r"SGD momentum must be a number in \[0, 1\)"),
                        (lambda: SGD([], 0.1), "SGD needs at least one parameter name")):
        with pytest.raises(ConfigError, match=match):
            make()
    with pytest.raises(ConfigError, match="Adam has no parameter names"):
        Adam(lr=0.1).lr("w", 0)


def test_the_config_and_cli_name_an_inner_optimizer():
    cfg = apply_overrides(TrainConfig(),
                          ["learner.inner_optimizer=adam", "learner.inner_betas=[0.8, 0.99]",
                                          "learner.inner_eps=1e-6"])
    learner_cfg = cfg.learner.config
    assert (learner_cfg.inner_optimizer, learner_cfg.inner_betas, learner_cfg.inner_eps) == ("adam",
                                                                                             (0.8,
                                                                                              0.99),
                                                                                             1e-6)
    rule = MAML(_model(), learner_cfg).rule
    assert isinstance(rule, Adam) and rule.betas == (0.8, 0.99) and rule.eps == 1e-6
    for items, match in (
        (["learner.inner_optimizer=adma"], "unknown inner_optimizer 'adma': did you mean 'adam'"),
                         (["learner.inner_optimizer=adam", "learner.inner_betas=[0.9, 1.0]"],
                          r"inner_betas\[1\] must be a number in \[0, 1\)"),
                         (["learner.inner_optimizer=rmsprop", "learner.inner_eps=0"],
                          "inner_eps must be a finite"),
                         (["learner.inner_momentum=0.9", "learner.inner_optimizer=adam"],
                          "inner_momentum applies to inner_optimizer sgd or rmsprop, not 'adam'")):
        with pytest.raises(ConfigError, match=match):
            apply_overrides(TrainConfig(), items)


def test_highers_adam_puts_eps_before_the_bias_correction():
    """The documented difference is real: with a visible eps, ours (PyTorch's formula) and higher's
    differ, and ours equals torch.optim.Adam's first step, ``p - lr * g / (|g| + eps)``."""
    model = _model(4)
    sx, sy, qx, qy = _data(5)
    names = [n for n, _ in model.named_parameters()]
    ours = _ours(model, Adam(names, 0.03, eps=1e-3, dtype=torch.float64), sx, sy, 1,
                 first_order=True)
    theirs, _ = _higher_adapt(model, torch.optim.Adam(model.parameters(), lr=0.03, eps=1e-3), sx,
                              sy, qx, qy, 1)
    grads = torch.autograd.grad(F.mse_loss(model(sx), sy), list(model.parameters()))
    for (n, p), g in zip(model.named_parameters(), grads):
        assert torch.allclose(ours[n], p - 0.03 * g / (g.abs() + 1e-3), atol=1e-15, rtol=0)
    assert max((ours[n] - theirs[n]).abs().max().item() for n in names) > 1e-6

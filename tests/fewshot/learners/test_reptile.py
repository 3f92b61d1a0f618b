"""Reptile: the meta-gradient theta - phi against hand-unrolled SGD and torch.optim.Adam inner
loops, the outer step with an SGD meta-optimizer, evaluation on the support set, settings and their
errors, learning."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.config import get_preset
from fewshot.config.schema import LearnerSection, TrainConfig
from fewshot.errors import ConfigError
from fewshot.learners import MAML, MAMLConfig, Reptile, ReptileConfig, build_learner
from fewshot.meta_optimizer import MetaOptimConfig, build_meta_optimizer
from tests.fewshot.learners.tasks import sinusoid_mse_before_after, vector_batch


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # test-only module init
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


_batch = vector_batch


def _hand_phi(model: nn.Module, x, y, steps: int, lr: float) -> list[torch.Tensor]:
    """``steps`` plain SGD steps on the mean cross-entropy of ``(x, y)``, unrolled by hand."""
    phi = [p.detach().clone().requires_grad_() for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    for _ in range(steps):
        out = torch.func.functional_call(model, dict(zip(names, phi)), (x,))
        grads = torch.autograd.grad(F.cross_entropy(out, y), phi)
        phi = [(p - lr * g).detach().requires_grad_() for p, g in zip(phi, grads)]
    return [p.detach() for p in phi]


def _data(t, inner_data: str):
    if inner_data == "all":
        return torch.cat([t.support_x, t.query_x]), torch.cat([t.support_y, t.query_y])
    return t.support_x, t.support_y


@pytest.mark.parametrize("inner_data", ["all", "support"])
@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_meta_gradient_is_theta_minus_phi_of_a_hand_unrolled_sgd_loop(inner_data, batching):
    steps, lr = 3, 0.3
    learner = Reptile(_mlp(1), ReptileConfig(inner_steps=steps, inner_lr=lr, inner_data=inner_data,
                                             task_batching=batching))
    batch = _batch(2)
    out = learner.meta_backward(batch)
    expect = [torch.zeros_like(p) for p in learner.parameters()]
    q_losses = []
    for i in range(len(batch)):
        t = batch.task(i)
        phi = _hand_phi(learner.model, *_data(t, inner_data), steps, lr)
        for e, p, f in zip(expect, learner.model.parameters(), phi):
            e += (p.detach() - f) / len(batch)
        names = [n for n, _ in learner.model.named_parameters()]
        q_out = torch.func.functional_call(learner.model, dict(zip(names, phi)), (t.query_x,))
        q_losses.append(F.cross_entropy(q_out, t.query_y).item())
    for p, e in zip(learner.parameters(), expect):
        assert p.grad is not None and torch.allclose(p.grad, e, atol=1e-12, rtol=0)
    # logged: query loss at phi
    assert out.loss.item() == pytest.approx(sum(q_losses) / len(q_losses), abs=1e-12)


def test_meta_gradient_with_an_adam_inner_loop_equals_torch_optim_adam():
    steps, lr, betas = 4, 0.05, (0.0, 0.999)  # the paper's inner Adam has beta1 = 0
    learner = Reptile(_mlp(3), ReptileConfig(inner_steps=steps, inner_lr=lr, inner_optimizer="adam",
                                             inner_betas=betas, inner_eps=1e-8))
    batch = _batch(4, b=2)
    learner.meta_backward(batch)
    for i in range(len(batch)):
        model = copy.deepcopy(learner.model)
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=1e-8)
        x, y = _data(batch.task(i), "all")
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        for p, f in zip(learner.model.parameters(), model.parameters()):
            p.grad -= (p.detach() - f.detach()) / len(batch)
    assert max(p.grad.abs().max().item() for p in learner.parameters()) < 1e-12


@pytest.mark.parametrize("eps", [1.0, 0.25])
def test_an_sgd_meta_step_of_lr_eps_is_the_reptile_update(eps):
    steps, lr = 2, 0.4
    learner = Reptile(_mlp(5), ReptileConfig(inner_steps=steps, inner_lr=lr))
    theta = [p.detach().clone() for p in learner.parameters()]
    batch = _batch(6)
    phis = [_hand_phi(learner.model, *_data(batch.task(i), "all"), steps, lr)
            for i in range(len(batch))]
    opt, _ = build_meta_optimizer(learner.parameters(), MetaOptimConfig(optimizer="sgd", lr=eps))
    assert isinstance(opt, torch.optim.SGD)
    opt.zero_grad()
    learner.meta_loss(batch).loss.backward()
    opt.step()
    for j, (p, t) in enumerate(zip(learner.parameters(), theta)):
        phi_mean = sum(phi[j] for phi in phis) / len(phis)
        assert torch.allclose(p.detach(), t + eps * (phi_mean - t), atol=1e-12, rtol=0)


def test_evaluation_adapts_on_the_support_set_as_maml_does():
    cfg = dict(inner_steps=3, inner_lr=0.3, task_batching="loop")
    reptile = Reptile(_mlp(7), ReptileConfig(**cfg))
    maml = MAML(copy.deepcopy(reptile.model), MAMLConfig(**cfg))
    batch = _batch(8)
    a, b = reptile.evaluate(batch), maml.evaluate(batch)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_settings_get_one_clear_error_each():
    for bad in ({"first_order": False}, {"msl": True}, {"first_order_epochs": 3},
                {"learn_inner_lr": True}):
        with pytest.raises(ConfigError, match=f"reptile: {next(iter(bad))} must be"):
            ReptileConfig(**bad)
    with pytest.raises(ConfigError,
                       match="inner_data must be 'all' \\(support \\+ query\\) or 'support'"):
        ReptileConfig(inner_data="query")
    section = LearnerSection("reptile", {})
    for lr in (1.5, 2.0):
        with pytest.raises(ConfigError,
                           match="optim.lr is Reptile's step size eps and must be in \\(0, 1\\]"):
            TrainConfig(learner=section, optim=MetaOptimConfig(optimizer="sgd", lr=lr))
    # Adam's lr is no step size
    TrainConfig(learner=section, optim=MetaOptimConfig(optimizer="adam", lr=1.5))
    TrainConfig(learner=LearnerSection("maml", {}), optim=MetaOptimConfig(optimizer="sgd", lr=1.5))
    with pytest.raises(ConfigError, match="optim.optimizer must be one of adam, sgd"):
        MetaOptimConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="optim.betas are Adam's"):
        MetaOptimConfig(optimizer="sgd", betas=(0.5, 0.9))
    with pytest.raises(ConfigError, match="inner_steps must be"):
        ReptileConfig(inner_steps=0)


@pytest.mark.parametrize("preset", ["omniglot-5w1s-reptile", "omniglot-20w5s-reptile"])
def test_presets_build_the_papers_protocol(preset):
    cfg = get_preset(preset)
    assert cfg.learner.name == "reptile" and cfg.optim.optimizer == "sgd" and cfg.optim.lr == 1.0
    assert cfg.learner.config.inner_optimizer == "adam" and cfg.learner.config.inner_betas[0] == 0.0
    # 10 train shots per class
    assert cfg.data.shots + cfg.data.queries == 10 and cfg.meta_batch == 5
    learner = build_learner("reptile", _mlp(), cfg.learner.config)
    assert isinstance(learner, Reptile)


@pytest.mark.slow
def test_reptile_learns_sinusoid_regression(one_thread):
    before, after = sinusoid_mse_before_after("reptile", {"inner_lr": 0.02},
                                              lambda ps: torch.optim.SGD(ps, 1.0))
    assert after < 0.7 * before, (before, after)

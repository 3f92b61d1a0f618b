"""Meta-optimizer and cosine annealing (MAML++ CA)."""
import copy
import math

import pytest
import torch

from fewshot.errors import ConfigError
from fewshot.meta_optimizer import MetaOptimConfig, build_meta_optimizer, fit_schedule


def test_cosine_annealing_follows_the_formula():
    p = torch.nn.Parameter(torch.zeros(3))
    opt, sched = build_meta_optimizer([p], MetaOptimConfig.mamlpp(), total_iterations=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(3)
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    for t, lr in enumerate(lrs):
        assert lr == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / 10)),
                                   rel=1e-9)
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)


def _run(opt, sched, steps):
    lrs = []
    for _ in range(steps):
        opt.param_groups[0]["params"][0].grad = torch.ones(3)
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_fit_schedule_extends_a_restored_cosine_to_the_new_end():
    p = torch.nn.Parameter(torch.zeros(3))
    opt, sched = build_meta_optimizer([p], MetaOptimConfig.mamlpp(), total_iterations=10)
    _run(opt, sched, 4)
    state, opt_state = sched.state_dict(), copy.deepcopy(opt.state_dict())
    # unchanged length: a no-op (length and LR), so an exact resume stays exact
    same_opt, again = build_meta_optimizer([p], MetaOptimConfig.mamlpp(), total_iterations=10)
    same_opt.load_state_dict(opt_state)
    again.load_state_dict(state)
    fit_schedule(again, 4, 10)
    assert again.T_max == 10 and same_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert _run(same_opt, again, 6) == _run(opt, sched, 6)
    # extended to 30 iterations: without the fit the restored T_max=10 anneals to 1e-5 at 10 and
    # climbs back
    stale_opt, stale = build_meta_optimizer([p], MetaOptimConfig.mamlpp(), total_iterations=30)
    stale_opt.load_state_dict(opt_state)
    stale.load_state_dict(state)
    climbed = _run(stale_opt, stale, 26)
    assert max(climbed[8:]) > 10 * min(climbed)
    fit_opt, fitted = build_meta_optimizer([p], MetaOptimConfig.mamlpp(), total_iterations=30)
    fit_opt.load_state_dict(opt_state)
    fitted.load_state_dict(state)
    fit_schedule(fitted, 4, 30)
    lrs = _run(fit_opt, fitted, 26)
    for t, lr in enumerate(lrs, start=5):  # the cosine of a 30-iteration run from here on
        assert lr == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / 30)),
                                   rel=1e-9)


def test_fit_schedule_of_a_schedule_that_began_mid_run():
    """A calibrated run's schedule starts at the source's iteration (last_epoch 0 there)."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt, sched = build_meta_optimizer([p], MetaOptimConfig.mamlpp(), total_iterations=2800)
    fit_schedule(sched, 2800, 2810)
    lrs = _run(opt, sched, 10)
    for t, lr in enumerate(lrs, start=1):
        assert lr == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / 10)),
                                   rel=1e-9)
    assert fit_schedule(None, 0, 5) is None  # no scheduler (constant LR): nothing to fit
    # a schedule that is not a cosine is left exactly as it is (state and learning rate)
    q = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([q], lr=0.1)
    step = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    _run(opt, step, 3)
    before, lr = dict(step.state_dict()), opt.param_groups[0]["lr"]
    fit_schedule(step, 3, 50)
    assert step.state_dict() == before and opt.param_groups[0]["lr"] == lr == 0.05


def test_constant_lr_without_cosine_and_adam_moves_params():
    p = torch.nn.Parameter(torch.zeros(2))
    opt, sched = build_meta_optimizer([p], MetaOptimConfig(lr=0.1), total_iterations=5)
    assert sched is None and isinstance(opt, torch.optim.Adam)
    p.grad = torch.tensor([1.0, -1.0])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([-0.1, 0.1]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=0),
     r"optim.lr must be a finite number > 0 \(the meta-optimizer's learning rate\), got 0: e.g."),
    (dict(lr=1e-3, min_lr=1e-2, cosine=True),
     r"optim.min_lr must be a finite number in \[0, lr=0.001\] with cosine annealing, got 0.01: "
     r"e.g."),
    (dict(weight_decay=-1), r"optim.weight_decay must be a finite number >= 0, got -1: e.g."),
    (dict(betas=(0.9, 1.0)),
     r"optim.betas must be two numbers in \[0, 1\), got \(0.9, 1.0\): e.g.")])
def test_bad_optim_config(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        MetaOptimConfig(**kwargs)


def test_bad_optimizer_arguments():
    with pytest.raises(ConfigError,
                       match="^the meta-optimizer got no trainable parameters: pass "
                             "learner.parameters"):
        build_meta_optimizer([], MetaOptimConfig(), 10)
    with pytest.raises(ConfigError, match="^total_iterations must be >= 1, got 0"):
        build_meta_optimizer([torch.nn.Parameter(torch.zeros(1))], MetaOptimConfig(), 0)

"""Meta-optimizer and cosine annealing (MAML++ CA)."""
import math

import pytest
import torch

from fewshot.errors import ConfigError
from fewshot.meta_optimizer import MetaOptimConfig, build_meta_optimizer


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
        assert lr == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / 10)), rel=1e-9)
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)


def test_constant_lr_without_cosine_and_adam_moves_params():
    p = torch.nn.Parameter(torch.zeros(2))
    opt, sched = build_meta_optimizer([p], MetaOptimConfig(lr=0.1), total_iterations=5)
    assert sched is None and isinstance(opt, torch.optim.Adam)
    p.grad = torch.tensor([1.0, -1.0])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([-0.1, 0.1]))


@pytest.mark.parametrize("kwargs", [dict(lr=0), dict(lr=1e-3, min_lr=1e-2, cosine=True), dict(weight_decay=-1),
                                    dict(betas=(0.9, 1.0))])
def test_bad_optim_config(kwargs):
    with pytest.raises(ConfigError):
        MetaOptimConfig(**kwargs)


def test_bad_optimizer_arguments():
    with pytest.raises(ConfigError):
        build_meta_optimizer([], MetaOptimConfig(), 10)
    with pytest.raises(ConfigError):
        build_meta_optimizer([torch.nn.Parameter(torch.zeros(1))], MetaOptimConfig(), 0)

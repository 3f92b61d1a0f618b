"""Hypergradient descent on one training run (fewshot.bilevel.hpo): per-weight decay learned by
the implicit method, a learning-rate schedule by unrolling; both must lower the validation loss,
and count the inner steps they spend."""
import torch
from torch import nn

from fewshot.bilevel import InnerProblem
from fewshot.bilevel.hpo import implicit_hpo, unrolled_hpo
from fewshot.rules import SGD

F64 = torch.float64


def _overfitting_regression(seed: int = 0, n: int = 10, d: int = 30):
    """Fewer training points than weights, and a target that uses a third of them."""
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(d, generator=g, dtype=F64) * (torch.arange(d) < d // 3)
    x, xv = torch.randn(n, d, generator=g, dtype=F64), torch.randn(200, d, generator=g, dtype=F64)
    y = x @ w_true + 0.1 * torch.randn(n, generator=g, dtype=F64)
    yv = xv @ w_true + 0.1 * torch.randn(200, generator=g, dtype=F64)
    return x, y, xv, yv


def test_implicit_hpo_learns_a_decay_per_weight_that_generalises():
    x, y, xv, yv = _overfitting_regression()
    log_decay = nn.Parameter(torch.full((30,), -4.0, dtype=F64))
    hyper = nn.ParameterDict({"log_decay": log_decay})

    def loss(p, xs, ys, step):
        return ((xs @ p["w"] - ys) ** 2).mean() / 2 + 0.5 * (log_decay.exp() * p["w"] ** 2).sum()

    problem = InnerProblem(loss, SGD(["w"], 0.05, dtype=F64), 50, x, y, hyper=hyper)
    outer = lambda p: ((xv @ p["w"] - yv) ** 2).mean() / 2  # noqa: E731
    result = implicit_hpo(problem, {"w": torch.zeros(30, dtype=F64)}, outer, [log_decay],
                          torch.optim.Adam([log_decay], lr=0.1), hyper_steps=40, terms=30,
                          solver="cg", alpha=0.05)
    assert result.inner_steps == 40 * 50 and len(result.history) == 40
    assert result.history[-1] < 0.7 * result.history[0], result.history[::8]


def test_unrolled_hpo_learns_a_learning_rate_schedule():
    x, y, xv, yv = _overfitting_regression(1)

    def loss(p, xs, ys, step):
        return ((xs @ p["w"] - ys) ** 2).mean() / 2

    rule = SGD(["w"], 0.01, steps=10, learnable=True, dtype=F64)
    problem = InnerProblem(loss, rule, 10, x, y)
    outer = lambda p: ((xv @ p["w"] - yv) ** 2).mean() / 2  # noqa: E731
    result = unrolled_hpo(problem, {"w": torch.zeros(30, dtype=F64)}, outer, [rule.lrs],
                          torch.optim.Adam([rule.lrs], lr=0.01), hyper_steps=30, checkpoint=3)
    assert result.inner_steps == 300
    assert result.history[-1] < 0.9 * result.history[0], result.history[::6]
    assert not torch.equal(rule.lrs.detach(), torch.full_like(rule.lrs, 0.01))  # a schedule

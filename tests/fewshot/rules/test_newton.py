"""NewtonCG: one full step on a convex quadratic lands on its minimiser (hand-solved normal
equations), damping solves the damped system, the step is bounded where the Hessian is indefinite,
the products come only from the inner loop, and bad settings get one error each."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot import InnerLoop
from fewshot.errors import ConfigError
from fewshot.functional import split_state
from fewshot.rules import NewtonCG

F64 = torch.float64


def _regression(seed: int = 0, n: int = 12, d: int = 4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, 1, generator=g, dtype=F64)


def _linear() -> nn.Module:
    torch.manual_seed(0)  # test-only init
    return nn.Linear(4, 1, bias=False).double()


@pytest.mark.parametrize("damping", [0.0, 0.7])
def test_one_full_step_solves_the_damped_newton_system(damping):
    """MSE of a linear model: H = (2/n) X^T X, g = (2/n) X^T (X w - y); the step is -(H + damping
    I)^{-1} g (damping 0: the least-squares solution in one step)."""
    x, y = _regression()
    model = _linear()
    params, buffers = split_state(model)
    rule = NewtonCG(["weight"], damping=damping, cg_steps=4, cg_tol=0.0, radius=None)
    out = InnerLoop(model, rule, ["weight"], F.mse_loss).run(
        params, buffers, x, y, steps=1, first_order=True)
    w = model.weight.detach().reshape(-1, 1)
    h = 2.0 / len(x) * x.T @ x
    g = 2.0 / len(x) * x.T @ (x @ w - y)
    want = w - torch.linalg.solve(h + damping * torch.eye(4, dtype=F64), g)
    assert torch.allclose(out.at(1)["weight"].reshape(-1, 1), want, atol=1e-12)
    if damping == 0:
        assert torch.allclose(want, torch.linalg.lstsq(x, y).solution, atol=1e-10)


def test_the_same_under_vmap_as_per_task():
    xs = torch.stack([_regression(s)[0] for s in range(3)])
    ys = torch.stack([_regression(s)[1] for s in range(3)])
    model = _linear()
    params, buffers = split_state(model)
    rule = NewtonCG(["weight"], damping=0.5, cg_steps=2, cg_tol=0.0)

    def run(x, y):
        return InnerLoop(model, rule, ["weight"], F.mse_loss).run(
            params, buffers, x, y, steps=2, first_order=True).at(2)["weight"]

    batched = torch.func.vmap(run)(xs, ys)
    for i in range(3):
        assert torch.allclose(batched[i], run(xs[i], ys[i]), atol=1e-13)


def test_an_indefinite_hessian_gives_a_step_no_longer_than_a_gradient_step_over_damping():
    """A concave loss (-MSE): H negative definite; the radius 1/damping bounds ||d|| by ||g|| /
    damping."""
    x, y = _regression(1)
    model = _linear()
    params, buffers = split_state(model)
    damping = 0.25
    rule = NewtonCG(["weight"], damping=damping, cg_steps=4, cg_tol=0.0)
    loss = lambda out, target: -F.mse_loss(out, target)  # noqa: E731
    out = InnerLoop(model, rule, ["weight"], loss).run(
        params, buffers, x, y, steps=1, first_order=True)
    w = model.weight.detach().reshape(-1, 1)
    g = -2.0 / len(x) * x.T @ (x @ w - y)
    step = (out.at(1)["weight"].reshape(-1, 1) - w).detach()
    assert float(step.norm()) <= float(g.norm()) / damping * (1 + 1e-12)
    assert float(step.norm()) > 0


def test_outside_the_inner_loop_it_says_where_products_come_from():
    rule = NewtonCG(["w"], damping=1.0)
    with pytest.raises(ConfigError, match="needs Hessian-vector products of the support loss"):
        rule({"w": torch.ones(2)}, {}, {"w": torch.zeros(2)}, step=0, loss=torch.zeros(()))


@pytest.mark.parametrize("bad, match", [
    ({"lr": 0.0}, "NewtonCG lr must be a finite number > 0"),
    ({"damping": -1.0}, "NewtonCG damping must be"),
    ({"cg_steps": 0}, "NewtonCG cg_steps must be"), ({"cg_tol": 1.0}, "NewtonCG cg_tol must be"),
    ({"radius": 0.0}, "NewtonCG radius must be a finite number > 0"),
])
def test_bad_settings_get_one_clear_error(bad, match):
    with pytest.raises(ConfigError, match=match):
        NewtonCG(["w"], **bad)

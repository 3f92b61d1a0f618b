"""Reverse-mode hypergradients through training (fewshot.bilevel.unrolled) against oracles:
ridge regression trained by gradient descent, whose hypergradient is derived by hand (forward-mode
recursion of dw_t/dlambda), and a small MLP against central finite differences."""
import pytest
import torch
from torch import nn

from fewshot.bilevel import InnerProblem, unroll, unrolled_hypergradient
from fewshot.errors import AdaptationError, ConfigError
from fewshot.rules import SGD

F64 = torch.float64


class Decay(nn.Module):
    """Per-weight L2 decay: the hyperparameter the ridge loss reads."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.lam = nn.Parameter(init.clone())


def ridge(seed: int = 0, n: int = 40, d: int = 5):
    """Training and validation data of a linear model, and the matrices of its quadratic losses."""
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(d, generator=g, dtype=F64)
    x, xv = torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, d, generator=g, dtype=F64)
    y = x @ w_true + 0.5 * torch.randn(n, generator=g, dtype=F64)
    yv = xv @ w_true + 0.5 * torch.randn(n, generator=g, dtype=F64)
    return x, y, xv, yv


def ridge_problem(x, y, decay: Decay, lr: float, steps: int) -> tuple[InnerProblem, SGD]:
    def loss(params, xs, ys, step):
        w = params["w"]
        return ((xs @ w - ys) ** 2).mean() / 2 + 0.5 * (decay.lam * w * w).sum()

    rule = SGD(["w"], lr, learnable=True, dtype=F64)
    return InnerProblem(loss, rule, steps, x, y, hyper=decay), rule


def validation(xv, yv):
    return lambda params: ((xv @ params["w"] - yv) ** 2).mean() / 2


def hand_hypergradient(x, y, xv, yv, lam, lr, steps, w0, first_graph=0):
    """d L_V(w_T) / d lambda and / d lr for w_{t+1} = w_t - lr (A w_t - b + lambda * w_t), by the
    forward-mode recursion J_{t+1} = (I - lr (A + diag lambda)) J_t - lr diag(w_t) (and for lr:
    - (A w_t - b + lambda w_t)); steps before ``first_graph`` are constants (truncation)."""
    n, d = x.shape
    a, b = x.T @ x / n, x.T @ y / n
    av, bv = xv.T @ xv / n, xv.T @ yv / n
    w = w0.clone()
    j_lam, j_lr = torch.zeros(d, d, dtype=F64), torch.zeros(d, dtype=F64)
    m = torch.eye(d, dtype=F64) - lr * (a + torch.diag(lam))
    for t in range(steps):
        g = a @ w - b + lam * w
        if t >= first_graph:
            j_lam = m @ j_lam - lr * torch.diag(w)
            j_lr = m @ j_lr - g
        w = w - lr * g
    v = av @ w - bv
    return j_lam.T @ v, j_lr @ v


@pytest.mark.parametrize("checkpoint", [0, 1, 3])
def test_unrolled_hypergradient_equals_the_hand_derived_one_on_ridge_regression(checkpoint):
    x, y, xv, yv = ridge()
    lam0, lr, steps = torch.tensor([0.1, 0.5, 0.0, 1.0, 0.2], dtype=F64), 0.1, 20
    decay = Decay(lam0)
    problem, rule = ridge_problem(x, y, decay, lr, steps)
    w0 = torch.zeros(5, dtype=F64)
    hg = unrolled_hypergradient(problem, {"w": w0}, validation(xv, yv), [decay.lam, rule.lrs],
                                checkpoint=checkpoint)
    want_lam, want_lr = hand_hypergradient(x, y, xv, yv, lam0, lr, steps, w0)
    assert (hg.grads[0] - want_lam).abs().max() <= 1e-8 * max(1.0, want_lam.abs().max())
    assert abs(float(hg.grads[1].sum()) - float(want_lr)) <= 1e-8 * max(1.0, abs(float(want_lr)))
    assert hg.losses.shape == (steps,) and bool(hg.losses[-1] < hg.losses[0])


def test_truncated_hypergradient_treats_the_earlier_steps_as_constants():
    x, y, xv, yv = ridge(1)
    lam0, lr, steps, k = torch.full((5,), 0.3, dtype=F64), 0.1, 30, 7
    decay = Decay(lam0)
    problem, rule = ridge_problem(x, y, decay, lr, steps)
    w0 = torch.zeros(5, dtype=F64)
    outer = validation(xv, yv)
    hg = unrolled_hypergradient(problem, {"w": w0}, outer, [decay.lam, rule.lrs], truncate=k,
                                checkpoint=3)
    want_lam, want_lr = hand_hypergradient(x, y, xv, yv, lam0, lr, steps, w0, first_graph=steps - k)
    assert torch.allclose(hg.grads[0], want_lam, rtol=1e-9, atol=1e-12)
    assert abs(float(hg.grads[1].sum()) - float(want_lr)) <= 1e-9 * max(1.0, abs(float(want_lr)))
    full = unrolled_hypergradient(problem, {"w": w0}, outer, [decay.lam], truncate=steps)
    assert torch.allclose(full.grads[0], hand_hypergradient(x, y, xv, yv, lam0, lr, steps, w0)[0],
                          rtol=1e-9, atol=1e-12)


def _mlp_problem(seed: int = 0, steps: int = 12):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 2, generator=g, dtype=F64, requires_grad=True)  # learned inputs, as in
    y = torch.sin(x.detach().sum(1, keepdim=True))                      # dataset distillation
    xv = torch.randn(32, 2, generator=g, dtype=F64)
    yv = torch.sin(xv.sum(1, keepdim=True))
    params = {"w1": 0.5 * torch.randn(8, 2, generator=g, dtype=F64),
              "b1": torch.zeros(8, dtype=F64),
              "w2": 0.5 * torch.randn(1, 8, generator=g, dtype=F64)}
    decay = nn.ParameterDict({n: nn.Parameter(torch.full_like(p, 0.01)) for n, p in params.items()})

    def net(p, inputs):
        return torch.tanh(inputs @ p["w1"].T + p["b1"]) @ p["w2"].T

    def loss(p, xs, ys, step):
        fit = ((net(p, xs) - ys) ** 2).mean()
        return fit + sum((decay[n] * p[n] * p[n]).sum() for n in p)

    rule = SGD(list(params), 0.3, learnable=True, dtype=F64)
    problem = InnerProblem(loss, rule, steps, x, y, hyper=decay)
    outer = lambda p: ((net(p, xv) - yv) ** 2).mean()  # noqa: E731
    return problem, params, outer, [decay["w1"], rule.lrs, x]


def test_unrolled_hypergradient_of_an_mlp_equals_central_finite_differences():
    problem, params, outer, hyper = _mlp_problem()
    hg = unrolled_hypergradient(problem, params, outer, hyper, checkpoint=5)
    plain = unrolled_hypergradient(problem, params, outer, hyper)
    for a, b in zip(hg.grads, plain.grads):  # checkpointing changes the memory, not the numbers
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    eps = 1e-6
    for h, grad in zip(hyper, hg.grads):
        for index in [(0,) * h.dim(), tuple(s - 1 for s in h.shape)]:
            with torch.no_grad():
                h[index] += eps
            up = float(outer(unroll(problem, params).params).detach())
            with torch.no_grad():
                h[index] -= 2 * eps
            down = float(outer(unroll(problem, params).params).detach())
            with torch.no_grad():
                h[index] += eps
            fd = (up - down) / (2 * eps)
            assert abs(float(grad[index]) - fd) <= 1e-6 * max(1.0, abs(fd)), (h.shape, index)


def test_bad_inputs_get_one_clear_error():
    problem, params, outer, hyper = _mlp_problem(steps=3)
    frozen = torch.zeros(3, dtype=F64)
    with pytest.raises(ConfigError, match=r"hyperparameter 1 \(3,\) does not require grad"):
        unrolled_hypergradient(problem, params, outer, [hyper[0], frozen])
    with pytest.raises(ConfigError, match="has dtype torch.int64, which has no gradient"):
        unrolled_hypergradient(problem, params, outer, [torch.zeros(2, dtype=torch.long)])
    with pytest.raises(ConfigError, match="truncate=4 exceeds the inner problem's 3 steps"):
        unrolled_hypergradient(problem, params, outer, hyper, truncate=4)
    with pytest.raises(ConfigError, match="outer loss must return a scalar"):
        unrolled_hypergradient(problem, params, lambda p: p["w1"], hyper)
    with pytest.raises(ConfigError, match="rule must be a fewshot.rules.UpdateRule"):
        InnerProblem(problem.loss, lambda g: g, 3, problem.x, problem.y)  # type: ignore[arg-type]
    exploding = InnerProblem(problem.loss, SGD(list(params), 1e12, dtype=F64), 20, problem.x,
                             problem.y, hyper=problem.hyper)
    with pytest.raises(AdaptationError, match=r"the inner problem diverged: its training loss at "
                                              r"step \d+ of 20"):
        unroll(exploding, params)


def test_checkpointing_under_saved_tensor_hooks_gives_the_same_hypergradient():
    """Saved-tensor hooks (save_on_cpu) hand back other tensor objects: the checkpointed segments
    must still pass the rule's and the loss module's own parameters their gradients."""
    problem, params, outer, hyper = _mlp_problem(steps=8)
    plain = unrolled_hypergradient(problem, params, outer, hyper)
    with torch.autograd.graph.save_on_cpu():
        hooked = unrolled_hypergradient(problem, params, outer, hyper, checkpoint=3)
    for a, b in zip(plain.grads, hooked.grads):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)

"""iMAML: closed-form oracle (linear least squares), dense-solve and finite-difference oracles,
memory that does not grow with inner steps, CG diagnostics, bad settings, learning."""
from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from episodes import TaskBatch
from fewshot.errors import AdaptationError, ConfigError
from fewshot.learners import IMAML, MAML, IMAMLConfig, MAMLConfig, build_learner
from tests.fewshot.learners.tasks import gen


def _linear_tasks(b: int = 2, n: int = 6, d: int = 3, o: int = 2, seed: int = 0) -> TaskBatch:
    g = gen(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return TaskBatch(r(b, n, d), r(b, n, o), r(b, n, d), r(b, n, o), None)


def _grads(learner, batch):
    learner.zero_grad()
    out = learner.meta_backward(batch)
    return out, {n: p.grad.clone() for n, p in learner.named_parameters()}


@pytest.mark.parametrize("batching", ["loop", "vmap"])
@pytest.mark.parametrize("solver", ["gd", "hf"])
def test_linear_least_squares_equals_the_closed_form(batching, solver):
    """``f(x) = W x``, MSE (mean over n*o entries, c = 2/(n o)): the inner minimiser is ``phi* = (c
    Y^T X + lam theta)(c X^T X + lam I)^{-1}`` and the implicit meta-gradient ``lam grad L_q(phi*)
    (c X^T X + lam I)^{-1}``; the inner loop runs to convergence and CG to exactness (d*o = 6
    unknowns).  iMAML-HF: the proximal objective is quadratic, so one full Newton step with an exact
    CG lands on ``phi*``."""
    torch.manual_seed(0)  # test-only module init
    model = nn.Linear(3, 2, bias=False).double()
    lam = 1.5
    inner = dict(inner_steps=400, inner_lr=0.3) if solver == "gd" else dict(inner_steps=1,
                                                                            inner_lr=1.0,
                                                                               hf_cg_steps=6)
    learner = IMAML(model,
                    IMAMLConfig(**inner, lam=lam, cg_steps=6, cg_tol=0.0, task_batching=batching,
                                       inner_solver=solver))
    batch = _linear_tasks()
    out, grads = _grads(learner, batch)
    theta = model.weight.detach()
    n, o = batch.support_y.shape[1:]
    c = 2.0 / (n * o)
    want_grad, want_loss = torch.zeros_like(theta), 0.0
    for i in range(len(batch)):
        x, y, qx, qy = batch.support_x[i], batch.support_y[i], batch.query_x[i], batch.query_y[i]
        a = c * x.T @ x + lam * torch.eye(3, dtype=torch.float64)
        phi = (c * y.T @ x + lam * theta) @ torch.linalg.inv(a)
        resid = qx @ phi.T - qy
        want_loss += float((resid ** 2).mean()) / len(batch)
        g_q = (2.0 / resid.numel()) * resid.T @ qx
        want_grad += lam * g_q @ torch.linalg.inv(a) / len(batch)
    assert out.metrics["loss"] == pytest.approx(want_loss, abs=1e-10)
    assert torch.allclose(grads["model.weight"], want_grad, atol=1e-6, rtol=0)
    assert (grads["model.weight"] - want_grad).abs().max() < 1e-10  # in practice far tighter
    assert out.metrics["cg_residual"] < 1e-10 and out.metrics["cg_unconverged"] == 0


def _tanh_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # test-only module init
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()


def test_cg_equals_a_dense_solve_of_i_plus_h_over_lam():
    """A nonlinear model: the meta-gradient equals ``(I + H/lam)^{-1} grad L_q(phi)`` with ``H`` the
    dense support-loss Hessian at the ``phi`` the inner loop reached
    (``torch.autograd.functional.hessian``)."""
    model, lam = _tanh_mlp(), 0.8
    cfg = IMAMLConfig(inner_steps=5, inner_lr=0.2, lam=lam, cg_steps=40, cg_tol=0.0,
                      task_batching="loop")
    learner = IMAML(model, cfg)
    batch = _linear_tasks(b=1, seed=3)
    _, grads = _grads(learner, batch)
    t = batch.task(0)
    phi = learner.adapt(t.support_x, t.support_y, best_step=False)
    names = list(phi.params)
    flat = torch.cat([phi.params[n].detach().reshape(-1) for n in names])
    shapes = [phi.params[n].shape for n in names]

    def unflat(v):
        return dict(zip(names, torch.split(v, [s.numel() for s in shapes]))) | {}

    def loss(v, x, y):
        ps = {n: p.reshape(s) for (n, p), s in zip(unflat(v).items(), shapes)}
        return F.mse_loss(torch.func.functional_call(model, ps, (x,)), y)

    h = torch.autograd.functional.hessian(lambda v: loss(v, t.support_x, t.support_y), flat)
    g_q = torch.autograd.functional.jacobian(lambda v: loss(v, t.query_x, t.query_y), flat)
    want = torch.linalg.solve(torch.eye(len(flat), dtype=torch.float64) + h / lam, g_q)
    got = torch.cat([grads["model." + n].reshape(-1) for n in names])
    assert torch.allclose(got, want, atol=1e-9, rtol=0)
    assert not torch.allclose(got, g_q, atol=1e-3)  # the Hessian term matters here


def test_meta_learned_only_parameters_get_the_implicit_gradient_finite_differences():
    """With ``no_adapt`` the first layer is meta-learned only: its gradient includes ``-(1/lam) d/dw
    (grad_phi L_s . g)``; checked with every other gradient against central differences of the
    converged meta-loss."""
    model = _tanh_mlp(1)
    cfg = IMAMLConfig(inner_steps=600, inner_lr=0.3, lam=2.0, cg_steps=30, cg_tol=0.0,
                      no_adapt=("0.",),
                      task_batching="loop")
    learner = IMAML(model, cfg)
    batch = _linear_tasks(b=2, seed=5)
    _, grads = _grads(learner, batch)
    eps = 1e-5
    with torch.no_grad():
        for name, p in learner.named_parameters():
            for idx in [(0,) * p.dim(), tuple(s - 1 for s in p.shape)]:
                old = p[idx].item()
                p[idx] = old + eps
                up = learner.meta_loss(batch).metrics["loss"]
                p[idx] = old - eps
                down = learner.meta_loss(batch).metrics["loss"]
                p[idx] = old
                assert grads[name][idx].item() == pytest.approx((up - down) / (2 * eps),
                                                                abs=1e-7), (name, idx)


def test_adapt_runs_gradient_descent_on_the_proximal_objective():
    """Two inner steps by hand: ``phi <- phi - lr (grad L_s(phi) + lam (phi - theta))``, theta the
    start."""
    model, lr, lam = _tanh_mlp(2), 0.3, 0.7
    learner = IMAML(model, IMAMLConfig(inner_steps=2, inner_lr=lr, lam=lam))
    t = _linear_tasks(b=1, seed=8).task(0)
    theta = {n: p.detach() for n, p in model.named_parameters()}
    phi = dict(theta)
    for _ in range(2):
        leaf = {n: p.clone().requires_grad_() for n, p in phi.items()}
        g = torch.autograd.grad(
            F.mse_loss(torch.func.functional_call(model, leaf, (t.support_x,)), t.support_y),
                                list(leaf.values()))
        phi = {n: p - lr * (gi + lam * (p - theta[n])) for (n, p), gi in zip(phi.items(), g)}
    adapted = learner.adapt(t.support_x, t.support_y, best_step=False)
    for n in phi:
        assert torch.allclose(adapted.params[n], phi[n], atol=1e-14, rtol=0), n


class _SavedBytes:
    """Bytes held by autograd graphs (tensors saved for backward), tracked through
    saved_tensors_hooks: deterministic, and the memory that grows with unrolled inner steps."""

    def __init__(self) -> None:
        self.live = self.peak = 0

    def pack(self, t: torch.Tensor):
        tracker, size = self, t.numel() * t.element_size()

        class Held:
            def __init__(self) -> None:
                self.t = t
                tracker.live += size
                tracker.peak = max(tracker.peak, tracker.live)

            def __del__(self) -> None:
                tracker.live -= size
        return Held()

    @staticmethod
    def unpack(h) -> torch.Tensor:
        return h.t


def _peak_saved_bytes(learner, batch) -> int:
    tracker = _SavedBytes()
    # a packed saved *output* refers to its tensor, whose grad_fn refers to the packed object: a
    # reference cycle that only the cyclic collector frees, whenever it happens to run.  Collected
    # before, and no collection during, the measurement: the same peak whatever ran before.
    gc.collect()
    gc.disable()
    try:
        with torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack):
            learner.meta_backward(batch)
    finally:
        gc.enable()
    return tracker.peak


def test_peak_memory_does_not_grow_with_inner_steps():
    batch = _linear_tasks(b=2, n=10, seed=7)
    peaks = {}
    for steps in (10, 100):
        imaml = IMAML(_tanh_mlp(),
                      IMAMLConfig(inner_steps=steps, inner_lr=0.05, task_batching="loop"))
        maml = MAML(_tanh_mlp(), MAMLConfig(inner_steps=steps, inner_lr=0.05, task_batching="loop"))
        peaks[steps] = (_peak_saved_bytes(imaml, batch), _peak_saved_bytes(maml, batch))
    (i10, m10), (i100, m100) = peaks[10], peaks[100]
    assert i10 > 0 and abs(i100 - i10) <= 0.1 * i10, peaks
    assert m100 > 5 * m10, peaks  # the measurement sees what unrolling costs


def test_cg_residual_and_unconverged_count_are_reported():
    batch = _linear_tasks(b=3, seed=2)
    loose = IMAML(_tanh_mlp(), IMAMLConfig(inner_steps=3, lam=0.5, cg_steps=1, cg_tol=1e-12))
    out = loose.meta_backward(batch)
    assert 0 < out.metrics["cg_residual"] < 1 and out.metrics["cg_unconverged"] == 3
    exact = IMAML(_tanh_mlp(), IMAMLConfig(inner_steps=3, lam=2.0, cg_steps=60, cg_tol=1e-6))
    out = exact.meta_backward(batch)
    assert out.metrics["cg_residual"] <= 1e-6 and out.metrics["cg_unconverged"] == 0
    first = IMAML(_tanh_mlp(), IMAMLConfig(inner_steps=3, first_order=True)).meta_backward(batch)
    assert "cg_residual" not in first.metrics  # no solve, nothing to report


def test_truncation_bounds_the_solve_where_the_hessian_is_indefinite():
    """A tiny lam makes ``I + H/lam`` indefinite on the tanh MLP.  Task by task: plain CG (cg_radius
    None) blows up on one (residual > 1, a meta-gradient 20x the truncated one); the truncated
    solve's meta-gradient is never larger than the first-order one (radius 1), and the metrics count
    it."""
    batch = _linear_tasks(b=3, seed=2)
    settings = dict(inner_steps=3, lam=0.01, cg_steps=20, cg_tol=0.0)
    norm = lambda g: float(torch.sqrt(sum((v ** 2).sum() for v in g.values())))  # noqa: E731
    blew_up = 0
    for i in range(len(batch)):
        one = TaskBatch(
            *(t[i:i + 1] for t in (batch.support_x, batch.support_y, batch.query_x, batch.query_y)),
                        None)
        first = _grads(IMAML(_tanh_mlp(), IMAMLConfig(**settings, first_order=True)), one)[1]
        out, cut = _grads(IMAML(_tanh_mlp(), IMAMLConfig(**settings)), one)
        plain_out, plain = _grads(IMAML(_tanh_mlp(), IMAMLConfig(**settings, cg_radius=None)), one)
        assert out.metrics["cg_negative_curvature"] == 1 and out.metrics["cg_truncated"] == 1
        assert plain_out.metrics["cg_negative_curvature"] == 1 and plain_out.metrics[
            "cg_truncated"] == 0
        assert norm(cut) <= norm(first) * (1 + 1e-12)
        blew_up += plain_out.metrics["cg_residual"] > 1 and norm(plain) > 20 * norm(cut)
    assert blew_up == 1


def test_a_nonfinite_cg_solve_stops_the_run():
    """Indefinite ``I + H/lam`` (a tiny lam on a concave direction) can make CG blow up; a
    non-finite result raises as a non-finite support loss does.  Forced here with a NaN query
    target."""
    batch = _linear_tasks(b=2, seed=4)
    batch.query_y[1, 0, 0] = float("nan")
    learner = IMAML(_tanh_mlp(), IMAMLConfig(inner_steps=2))
    with pytest.raises(AdaptationError,
                       match="conjugate-gradient solve of the implicit meta-gradient is not "
                             "finite"):
        learner.meta_backward(batch)


@pytest.mark.parametrize("bad, match", [
    ({"lam": 0.0}, "lam must be a finite number > 0"), ({"lam": -1}, "lam must be"),
    ({"lam": float("inf")}, "lam must be"), ({"lam": True}, "lam must be"),
    ({"cg_steps": 0}, "cg_steps must be"), ({"cg_steps": 2.5}, "cg_steps must be"),
    ({"cg_tol": -1e-3}, r"cg_tol must be a number in \[0, 1\)"),
    ({"cg_tol": 1.0}, "cg_tol must be"),
    ({"cg_radius": 0.0}, "cg_radius must be a finite number > 0"),
    ({"inner_solver": "newton"}, "inner_solver must"),
    ({"hf_cg_steps": 0}, "hf_cg_steps must be"), ({"cg_radius": float("inf")}, "cg_radius must"),
    ({"inner_steps": 0}, "inner_steps must be"), ({"inner_lr": -0.1}, "inner_lr must be"),
    ({"msl": True}, "msl does not apply to iMAML"),
    ({"checkpoint_steps": 2}, "checkpoint_steps does not apply to iMAML"),
])
def test_bad_settings_get_one_clear_error(bad, match):
    with pytest.raises(ConfigError, match=match):
        IMAMLConfig(**bad)


def test_imaml_hf_forces_the_hessian_free_inner_solver():
    learner = build_learner("imaml-hf", _tanh_mlp(), IMAMLConfig())
    assert learner.config.inner_solver == "hf" and learner.rule.needs_hvp
    preset = build_learner("imaml-hf", _tanh_mlp()).config
    assert (preset.inner_solver, preset.inner_steps, preset.inner_lr) == ("hf", 5, 1.0)


def test_foimaml_forces_first_order_and_skips_the_solve():
    learner = build_learner("foimaml", _tanh_mlp(), IMAMLConfig(first_order=False))
    assert learner.config.first_order is True


def _related_tasks(g: torch.Generator, b: int, k: int = 3, d: int = 5) -> TaskBatch:
    """``y = 2 tanh(a . x)`` with ``a`` near a shared ``a0``: 3 shots in 5 dims cannot pin ``a``
    down alone, so a learned initialisation (iMAML's prior, the proximal centre) is what makes
    adaptation work."""
    a = torch.linspace(-1, 1, d, dtype=torch.float64) + 0.1 * torch.randn(b, d, generator=g,
                                                                          dtype=torch.float64)
    x = torch.randn(b, 2 * k, d, generator=g, dtype=torch.float64)
    y = 2 * (x @ a.unsqueeze(-1)).tanh()
    return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:], None)


def test_imaml_learns_related_regression_tasks(one_thread):
    torch.manual_seed(0)  # test-only module init
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    learner = build_learner("imaml", model, {"inner_steps": 10, "inner_lr": 0.1, "lam": 1.0})
    opt = torch.optim.Adam(learner.parameters(), 1e-2)
    val = _related_tasks(gen(1), 200)
    untrained = learner.eval().evaluate(val)["mse"].mean().item()
    learner.train()
    train = gen(0)
    for _ in range(100):
        opt.zero_grad()
        learner.meta_backward(_related_tasks(train, 8))
        opt.step()
    trained = learner.eval().evaluate(val)["mse"].mean().item()
    assert trained < 0.2 * untrained, (untrained, trained)

"""Implicit hypergradients (fewshot.bilevel.implicit) against ridge regression's closed form at its
exact solution, and the Neumann series' error against the theory, term by term."""
import pytest
import torch

from fewshot.bilevel import implicit_hypergradient, neumann_inverse_hvp
from fewshot.errors import ConfigError
from tests.fewshot.bilevel.test_unrolled import F64, Decay, ridge, validation


def _exact(x, y, lam):
    n = x.shape[0]
    h = x.T @ x / n + torch.diag(lam)
    return h, torch.linalg.solve(h, x.T @ y / n)


def _train_loss(x, y, decay):
    return lambda p: ((x @ p["w"] - y) ** 2).mean() / 2 + 0.5 * (decay.lam * p["w"] ** 2).sum()


@pytest.mark.parametrize("solver", ["cg", "neumann"])
def test_implicit_hypergradient_equals_the_closed_form_at_the_exact_solution(solver):
    x, y, xv, yv = ridge(2)
    lam0 = torch.tensor([0.2, 0.05, 1.0, 0.4, 0.1], dtype=F64)
    decay = Decay(lam0)
    h, w_star = _exact(x, y, lam0)
    n = xv.shape[0]
    v = xv.T @ xv @ w_star / n - xv.T @ yv / n
    want = -w_star * torch.linalg.solve(h, v)  # -diag(w*) H^{-1} dL_V/dw
    alpha = 1.0 / float(torch.linalg.eigvalsh(h).max())
    kw = dict(terms=5, cg_tol=1e-14) if solver == "cg" else dict(terms=3000, alpha=alpha)
    hg = implicit_hypergradient(_train_loss(x, y, decay), {"w": w_star}, validation(xv, yv),
                                [decay.lam], solver=solver, **kw)
    assert (hg.grads[0] - want).abs().max() <= 1e-8 * max(1.0, float(want.abs().max()))


def test_the_neumann_error_is_the_theorys_term_by_term():
    """After K terms alpha sum_{j<=K} (I - alpha H)^j v falls short of H^-1 v by
    (I - alpha H)^{K+1} H^-1 v: the error falls geometrically, at the rate of the largest
    |1 - alpha eig(H)|."""
    x, y, _, _ = ridge(3)
    h, _ = _exact(x, y, torch.full((5,), 0.1, dtype=F64))
    v = torch.randn(5, generator=torch.Generator().manual_seed(0), dtype=F64)
    eig = torch.linalg.eigvalsh(h)
    alpha = 1.0 / float(eig.max())
    exact = torch.linalg.solve(h, v)
    m = torch.eye(5, dtype=F64) - alpha * h
    errors = []
    for terms in (0, 1, 5, 20, 80):
        approx = neumann_inverse_hvp(lambda u: {"w": h @ u["w"]}, {"w": v}, terms=terms,
                                     alpha=alpha)["w"]
        theory = torch.linalg.matrix_power(m, terms + 1) @ exact
        assert torch.allclose(exact - approx, theory, rtol=1e-9, atol=1e-12)
        errors.append(float((approx - exact).norm()))
    assert all(b < a for a, b in zip(errors, errors[1:]))
    rate = float((1 - alpha * eig).abs().max())
    assert errors[-1] <= rate ** 81 * float(exact.norm()) * (1 + 1e-9)


def test_implicit_bad_inputs_get_one_clear_error():
    x, y, xv, yv = ridge()
    decay = Decay(torch.full((5,), 0.1, dtype=F64))
    args = (_train_loss(x, y, decay), {"w": torch.zeros(5, dtype=F64)}, validation(xv, yv),
            [decay.lam])
    with pytest.raises(ConfigError, match="unknown solver 'lu'"):
        implicit_hypergradient(*args, solver="lu")
    with pytest.raises(ConfigError, match="Neumann series needs a step alpha > 0"):
        implicit_hypergradient(*args)
    with pytest.raises(ConfigError, match="must be a finite scalar"):
        implicit_hypergradient(lambda p: p["w"].sum() * float("inf"), *args[1:], alpha=0.1)

"""CG with Steihaug's trust region: plain CG against a textbook oracle, exact solves where the
radius cannot bind (A >= I), the stop on the boundary and at negative curvature computed by hand,
NaN kept visible, and the same numbers per system and under vmap."""
from __future__ import annotations

import math

import torch

from fewshot.cg import conjugate_gradient

F64 = torch.float64


def _matvec(a: torch.Tensor):
    return lambda p: {"v": a @ p["v"]}


def _plain_cg(a: torch.Tensor, b: torch.Tensor, steps: int) -> tuple[torch.Tensor, float]:
    """Textbook CG after ``steps`` steps: ``(x, ||b - A x|| / ||b||)`` (the oracle)."""
    x, r = torch.zeros_like(b), b.clone()
    p = r.clone()
    for _ in range(steps):
        ap = a @ p
        alpha = (r @ r) / (p @ ap)
        x, r_new = x + alpha * p, r - alpha * ap
        p, r = r_new + (r_new @ r_new) / (r @ r) * p, r_new
    return x, float(r.norm() / b.norm())


def _spd(seed: int, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g, dtype=F64)
    return torch.eye(n, dtype=F64) + m @ m.T / n, torch.randn(n, generator=g, dtype=F64)


def test_without_a_radius_it_is_textbook_cg():
    a, b = _spd(3)
    # indefinite: plain CG steps on through negative curvature
    a = a - 1.5 * torch.eye(6, dtype=F64)
    assert torch.linalg.eigvalsh(a).min() < 0
    want_x, want_r = _plain_cg(a, b, 4)
    res = conjugate_gradient(_matvec(a), {"v": b}, 4, 0.0)
    assert torch.allclose(res.x["v"], want_x,
                          atol=1e-12) and abs(float(res.residual) - want_r) < 1e-12
    assert not res.truncated


def test_where_a_is_at_least_the_identity_the_unit_radius_never_binds():
    for seed in range(4):
        a, b = _spd(seed)
        res = conjugate_gradient(_matvec(a), {"v": b}, 6, 0.0, radius=1.0)
        assert torch.allclose(res.x["v"], torch.linalg.solve(a, b),
                              atol=1e-10) and res.residual < 1e-10
        assert not res.truncated and not res.negative_curvature


def test_a_step_leaving_the_region_stops_on_its_boundary():
    """A = diag(2, -1), b = (1, 1), radius 1 (||x|| <= sqrt 2): step 1 would go to x = (2, 2),
    outside, so x = tau b with tau = 1; residual b - A b = (-1, 2), relative sqrt(5/2)."""
    a = torch.diag(torch.tensor([2.0, -1.0], dtype=F64))
    res = conjugate_gradient(_matvec(a), {"v": torch.ones(2, dtype=F64)}, 10, 0.0, radius=1.0)
    assert torch.allclose(res.x["v"], torch.ones(2, dtype=F64), atol=1e-15)
    assert abs(float(res.residual) - math.sqrt(2.5)) < 1e-14
    assert bool(res.truncated) and not res.negative_curvature


def test_negative_curvature_stops_the_solve_at_its_iterate():
    b = {"v": torch.tensor([3.0, 4.0], dtype=F64)}
    res = conjugate_gradient(_matvec(-torch.eye(2, dtype=F64)), b, 10, 0.0, radius=1.0)
    # at step 0: along b to the boundary, x = b
    assert torch.allclose(res.x["v"], b["v"], atol=1e-15)
    # b - (-b) = 2b
    assert bool(res.negative_curvature) and bool(res.truncated) and float(res.residual) == 2.0
    # later: A = diag(1, 1, -0.5), b = (1, 1, 0.1), radius 3: step 1 stays inside, direction 2 is
    # negative
    a = torch.diag(torch.tensor([1.0, 1.0, -0.5], dtype=F64))
    v = torch.tensor([1.0, 1.0, 0.1], dtype=F64)
    first, first_r = _plain_cg(a, v, 1)
    assert float(first.norm()) < 3.0 * float(v.norm())
    res = conjugate_gradient(_matvec(a), {"v": v}, 10, 0.0, radius=3.0)
    assert bool(res.negative_curvature) and bool(res.truncated)
    assert torch.allclose(res.x["v"], first,
                          atol=1e-14) and abs(float(res.residual) - first_r) < 1e-14


def test_a_non_finite_product_gives_a_non_finite_residual():
    b = {"v": torch.ones(2, dtype=F64)}
    for radius in (None, 1.0):
        assert torch.isnan(
            conjugate_gradient(lambda p: {"v": p["v"] * float("nan")}, b, 5, 0.0, radius).residual)


def test_tolerance_and_masking_give_the_same_numbers_under_vmap():
    mats = torch.stack([torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=F64),
                        torch.diag(torch.tensor([2.0, -1.0], dtype=F64)), torch.eye(2, dtype=F64)])
    bs = torch.stack(
        [torch.tensor([1.0, 2.0], dtype=F64), torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64)])
    for radius in (None, 1.0):
        def solve(a, v, radius=radius):
            return tuple(conjugate_gradient(_matvec(a), {"v": v}, 10, 1e-3, radius))
        batched = torch.func.vmap(solve)(mats, bs)
        for i in range(3):
            one = conjugate_gradient(_matvec(mats[i]), {"v": bs[i]}, 10, 1e-3, radius)
            assert torch.equal(batched[0]["v"][i], one.x["v"]) and torch.equal(batched[1][i],
                                                                               one.residual)
            assert bool(batched[2][i]) == bool(one.negative_curvature) and bool(
                batched[3][i]) == bool(one.truncated)
        assert torch.equal(batched[0]["v"][2], torch.zeros(2, dtype=F64)) and batched[1][2] == 0

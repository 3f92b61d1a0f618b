"""Adaptation never returns what diverged: ``adapt``/``evaluate`` use the lowest-support-loss step
when the support loss ends above it (``best_step``), chosen from support labels only; checked
against a hand-unrolled SGD inner loop."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import AdaptationError
from fewshot.learners import MAML, MAMLConfig
from fewshot.nn import Conv4
from tests.fewshot.learners.tasks import cls_batch


def _mlp_learner(lr: float, batching: str, best: bool = True) -> MAML:
    torch.manual_seed(0)  # test-only module init
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    return MAML(model,
                MAMLConfig(inner_steps=1, inner_lr=lr, task_batching=batching,
                           best_step=best)).eval()


def _oracle(learner: MAML, sx, sy, qx, qy, steps: int, lr: float, best: bool) -> tuple[int, float,
                                                                                       int]:
    """(step used, query loss there, first non-finite support step or -1) by plain autograd SGD."""
    params = [p.detach().clone() for p in learner.model.parameters()]

    def forward(ps, x):
        h = F.relu(F.linear(x.flatten(1), ps[0], ps[1]))
        return F.linear(h, ps[2], ps[3])

    history, losses = [params], []
    for _ in range(steps):
        ps = [p.detach().requires_grad_() for p in history[-1]]
        loss = F.cross_entropy(forward(ps, sx), sy)
        grads = torch.autograd.grad(loss, ps)
        losses.append(float(loss))
        history.append([p - lr * g for p, g in zip(ps, grads)])
    with torch.no_grad():
        losses.append(float(F.cross_entropy(forward(history[-1], sx), sy)))
    finite = [(v, t) for t, v in enumerate(losses[:-1]) if math.isfinite(v)]
    used = steps
    if best and finite and not (losses[-1] <= min(finite)[0]):
        used = min(finite)[1]  # the earliest of the lowest
    bad = next((t for t, v in enumerate(losses) if not math.isfinite(v)), -1)
    with torch.no_grad():
        q = float(F.cross_entropy(forward(history[used], qx), qy))
    return used, q, bad


@pytest.mark.parametrize("batching", ["loop", "vmap"])
# falls; rises; becomes non-finite
@pytest.mark.parametrize("lr, steps", [(0.1, 4), (30.0, 4), (1e9, 20)])
@pytest.mark.parametrize("best", [True, False])
def test_evaluate_uses_the_best_support_step_as_the_oracle(batching, lr, steps, best):
    learner = _mlp_learner(lr, batching, best)
    batch = cls_batch(11, b=4)
    out = learner.evaluate(batch, steps=steps)
    for i in range(len(batch)):
        used, q, bad = _oracle(learner, batch.support_x[i], batch.support_y[i], batch.query_x[i],
                               batch.query_y[i], steps, lr, best)
        assert int(out["step"][i]) == used and int(out["nonfinite_at"][i]) == bad
        if math.isfinite(q):
            assert out["loss"][i].item() == pytest.approx(q, abs=1e-9, rel=1e-9)
        else:  # a non-finite task scores 0 instead of whatever argmax makes of NaN
            assert not math.isfinite(out["loss"][i].item()) and out["accuracy"][i].item() == 0.0
    if lr == 0.1:  # the loss falls: the last step is used everywhere
        assert (out["step"] == steps).all()
    if lr == 30.0 and best:
        assert (out["step"] < steps).any()
    if lr == 1e9:  # the case the quick start crashed on: some support loss becomes non-finite
        assert (out["nonfinite_at"] >= 0).any()


def test_adapt_returns_the_best_step_and_raises_only_when_no_step_is_finite():
    # the float64 support loss grows ~1e18-fold a step: inf by step 20
    learner = _mlp_learner(1e9, "loop")
    t = cls_batch(12, b=1).task(0)
    adapted = learner.adapt(t.support_x, t.support_y, steps=20)
    used, _, bad = _oracle(learner, t.support_x, t.support_y, t.query_x, t.query_y, 20, 1e9, True)
    assert bad >= 0 and adapted.steps == used < 20 and adapted.diverged
    assert all(torch.isfinite(v).all() for v in adapted.params.values())
    with pytest.raises(AdaptationError, match="not finite at inner step"):
        learner.adapt(t.support_x, t.support_y, steps=20, best_step=False)
    with pytest.raises(AdaptationError, match="not finite at inner step 0"):
        learner.adapt(t.support_x * float("nan"), t.support_y, steps=2)


def test_per_step_batch_norm_takes_each_tasks_own_slot_under_vmap():
    # tasks choose different steps; under vmap every slot's outputs are computed and each task takes
    # its own
    def learner(batching):
        torch.manual_seed(1)  # test-only module init
        model = Conv4(1, 3, hidden=4, image_size=8, blocks=2).double()
        return MAML(model,
                    MAMLConfig(inner_steps=3, inner_lr=1.0, per_step_bn=True, bn_mode="support",
                                      task_batching=batching)).eval()

    batch = cls_batch(13, b=6, size=8)
    loop, vmapped = learner("loop").evaluate(batch), learner("vmap").evaluate(batch)
    assert len(set(loop["step"].tolist())) > 1  # the case this test is about
    assert torch.equal(loop["step"], vmapped["step"])
    assert torch.allclose(loop["loss"], vmapped["loss"], atol=1e-9, rtol=0)

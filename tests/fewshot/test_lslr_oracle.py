"""LSLR (learned per-tensor, per-step inner learning rates) checked second order against `higher`.

The oracle is higher's differentiable SGD with one parameter group per tensor, whose ``lr`` is
overridden at every step with that tensor's learned rate for the step (``diffopt.step(...,
override={"lr": [...]})``): the meta-gradients of the model weights *and* of the learning rates
must match ours.
"""
import higher
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from episodes import TaskBatch
from fewshot import MAML, MAMLConfig


def _setup(steps: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    g = torch.Generator().manual_seed(1)
    sx, sy, qx, qy = (torch.randn(1, 6, d, generator=g, dtype=torch.float64) for d in (3, 2, 3, 2))
    learner = MAML(model,
                   MAMLConfig(inner_steps=steps, inner_lr=0.1, learn_inner_lr=True,
                              task_batching="loop"))
    lr_params = [p for n, p in learner.named_parameters() if not n.startswith("model.")]
    assert len(lr_params) == 1, "expected one tensor of learned inner LRs [tensors, steps]"
    lrs = lr_params[0]
    assert lrs.shape == (len(list(model.parameters())), steps)
    with torch.no_grad():  # distinct rates per tensor and per step: an index mix-up cannot pass
        lrs.copy_(0.05 + 0.2 * torch.rand(lrs.shape, generator=g, dtype=lrs.dtype))
    return model, learner, lrs, TaskBatch(sx, sy, qx, qy, ways=None)


def _higher(model, lrs, batch, steps, first_order=False):
    params = list(model.parameters())
    opt = torch.optim.SGD([{"params": [p]} for p in params], lr=1.0)
    fmodel = higher.monkeypatch(model, copy_initial_weights=False, track_higher_grads=True)
    diffopt = higher.optim.get_diff_optim(opt, params, fmodel=fmodel, track_higher_grads=True)
    detach = (lambda grads: [g.detach() for g in grads]) if first_order else None
    for t in range(steps):
        diffopt.step(F.mse_loss(fmodel(batch.support_x[0]), batch.support_y[0]),
                     override={"lr": [lrs[i, t] for i in range(len(params))]}, grad_callback=detach)
    loss = F.mse_loss(fmodel(batch.query_x[0]), batch.query_y[0])
    return torch.autograd.grad(loss, [*params, lrs])


@pytest.mark.parametrize("steps", [1, 3])
def test_lslr_meta_gradients_match_higher_with_lr_override(steps):
    model, learner, lrs, batch = _setup(steps)
    ours = torch.autograd.grad(learner.meta_loss(batch).loss, [*model.parameters(), lrs])
    ref = _higher(model, lrs, batch, steps)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-8)
    # every learned rate gets a gradient of its own, and second order really differs from first
    # order
    assert bool((ours[-1] != 0).all())
    first = _higher(model, lrs, batch, steps, first_order=True)
    assert max((a - b).abs().max().item() for a, b in zip(ours, first)) > 1e-6

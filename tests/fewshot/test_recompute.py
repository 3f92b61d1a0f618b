"""Checkpointed inner-loop steps (fewshot.recompute): the plain loop's gradients, losses and
buffers, replayed randomness and module flags, the memory it saves, and where it refuses to run."""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import ConfigError, FewshotError
from fewshot.functional import InnerLoop, call, split_state
from fewshot.nn import StepBatchNorm1d
from fewshot.rules import SGD, Chain
from tests.fewshot.test_functional import _data, _net, _Scale, _sgd


def _bn_net(seed: int, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)  # test-only module init
    return nn.Sequential(nn.Linear(3, 6), StepBatchNorm1d(6, steps=4), nn.Tanh(),
                         nn.Dropout(dropout),
                         nn.Linear(6, 2)).double()


def _msl_meta_grads(model, rule, data, *, steps, first_order, checkpoint, keep, names=None):
    """Query losses after the kept steps (MSL-style), their sum's gradients w.r.t. the model's and
    the rule's parameters, and the loop's losses and buffers."""
    sx, sy, qx, qy = data
    params, buffers = split_state(model)
    names = list(params) if names is None else names
    res = InnerLoop(model, rule, names, F.mse_loss, checkpoint=checkpoint).run(
        params, buffers, sx, sy, steps=steps, first_order=first_order, keep=keep)
    total = sum(F.mse_loss(call(model, res.at(t), res.buffers, qx, step=t), qy)
                for t in sorted(keep))
    wrt = list(model.parameters()) + list(rule.parameters())
    grads = torch.autograd.grad(total, wrt, allow_unused=True)
    return total, [torch.zeros_like(p) if g is None else g for p, g in zip(wrt, grads)], res


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("checkpoint", [1, 2, 5])
def test_checkpointed_loop_gives_the_plain_loops_gradients_losses_and_buffers(first_order,
                                                                              checkpoint):
    # per-step BN with running statistics, a learned per-step LR (a rule parameter read inside the
    # recomputed segments), a fixed (meta-learned, not adapted) layer and a stateful chained rule
    model, data = _bn_net(1), _data(2)
    names = ["0.weight", "0.bias", "4.weight", "4.bias"]  # the BN affine parameters stay fixed
    out = {}
    for ck in (0, checkpoint):
        rule = Chain(_Scale(1.5), SGD(names, 0.2, steps=4, learnable=True, dtype=torch.float64))
        with torch.no_grad():
            rule.rules[1].lrs.add_(torch.linspace(0, 0.1, 16, dtype=torch.float64).reshape(4, 4))
        out[ck] = _msl_meta_grads(model, rule, data, steps=5, first_order=first_order,
                                  checkpoint=ck, keep={2, 5},
                                  names=names)
    (l0, g0, r0), (l1, g1, r1) = out[0], out[checkpoint]
    assert abs(l0.item() - l1.item()) < 1e-12
    # every meta-parameter gets a gradient (none is silently cut)
    assert all(g.abs().sum() > 0 for g in g0)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, atol=1e-10, rtol=0)
    assert torch.equal(r0.losses, r1.losses)
    assert all(torch.equal(r0.buffers[k], r1.buffers[k]) for k in r0.buffers)
    assert r1.state["0"]["count"].item() == 5
    assert [p is None for p in r1.params] == [False, True, False, True, True, False]


def test_checkpoint_replays_dropout_draws_and_the_forward_time_module_flags():
    model, data = _bn_net(3, dropout=0.3), _data(4)
    grads = []
    for ck in (0, 2):
        # dropout draws from the global RNG; the recomputation must replay them
        torch.manual_seed(7)
        params, buffers = split_state(model)
        names = list(params)
        res = InnerLoop(model, _sgd(names, 0.1), names, F.mse_loss, checkpoint=ck).run(
            params, buffers, data[0], data[1], steps=4)
        loss = F.mse_loss(call(model, res.at(4), res.buffers, data[2], step=4), data[3])
        # backward (and so the recomputation) now runs with other flags: they must not matter
        model.eval()
        grads.append(torch.autograd.grad(loss, list(params.values())))
        model.train()
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-10, rtol=0)


class _Held:
    """What the counting pack hook stores instead of a tensor (weakly tracked to see what the graph
    keeps)."""

    __slots__ = ("t", "__weakref__")

    def __init__(self, t):
        self.t = t


def _bytes_kept_by_graph(model, *, steps, checkpoint):
    """Bytes of distinct storages the autograd graph holds after the inner loop and a query
    forward."""
    import weakref

    held = weakref.WeakSet()

    def pack(t):
        h = _Held(t)
        held.add(h)
        return h

    sx, sy, qx, qy = _data(5, n=64)
    params, buffers = split_state(model)
    names = list(params)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda h: h.t):
        res = InnerLoop(model, _sgd(names, 0.1), names, F.mse_loss, checkpoint=checkpoint).run(
            params, buffers, sx, sy, steps=steps, keep=())
        loss = F.mse_loss(call(model, res.at(steps), res.buffers, qx, step=steps), qy)
    kept = {h.t.untyped_storage().data_ptr(): h.t.untyped_storage().nbytes() for h in held}
    del loss, res
    return sum(kept.values())


def test_checkpointed_graph_grows_by_one_parameter_copy_per_segment():
    model = _bn_net(6)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    plain = _bytes_kept_by_graph(model, steps=8, checkpoint=0) - _bytes_kept_by_graph(model,
                                                                                      steps=2,
                                                                                      checkpoint=0)
    ckpt = _bytes_kept_by_graph(model, steps=8, checkpoint=2) - _bytes_kept_by_graph(model, steps=2,
                                                                                     checkpoint=2)
    # 3 more segments: their input parameters are all the graph keeps of them
    assert 0 < ckpt <= 3 * param_bytes
    # the plain loop keeps every step's activations and double-backward graph (64 examples x 6
    # units...)
    assert plain > 6 * param_bytes


def test_keep_and_checkpoint_arguments_and_where_checkpointing_cannot_run():
    model, (sx, sy, _, _) = _net(7), _data(8)
    params, _ = split_state(model)
    names = list(params)
    loop = InnerLoop(model, _sgd(names, 0.1), names, F.mse_loss)
    res = loop.run(params, {}, sx, sy, steps=3, keep=[1])
    # input and last step always kept
    assert [p is None for p in res.params] == [False, False, True, False]
    with pytest.raises(FewshotError, match="parameters after 2 updates were not kept"):
        res.at(2)
    with pytest.raises(ConfigError, match=r"keep must name steps in 0..3"):
        loop.run(params, {}, sx, sy, steps=3, keep=[4])
    with pytest.raises(ConfigError, match="checkpoint must be"):
        replace(loop, checkpoint=-1).run(params, {}, sx, sy, steps=3)
    with torch.no_grad():  # evaluation: nothing to recompute, the plain loop runs
        a = replace(loop, checkpoint=1).run(params, {}, sx, sy, steps=3)
        b = loop.run(params, {}, sx, sy, steps=3)
    assert all(torch.equal(a.at(3)[n], b.at(3)[n]) for n in names)

    # a learnable tensor only the loss function knows: the recomputed segment could not pass it its
    # gradient, so the backward refuses instead of silently dropping that part of the meta-gradient
    temperature = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    hidden = replace(loop, loss_fn=lambda out, target: F.mse_loss(out * temperature, target),
                     checkpoint=2)
    res = hidden.run(params, {}, sx, sy, steps=3)
    with pytest.raises(ConfigError,
                       match=r"checkpoint_steps: the inner loop reads a tensor \(\) that requires "
                             r"grad"):
        torch.autograd.grad(res.at(3)["0.weight"].sum(), [params["0.weight"]])

    def one(x, y):
        return replace(loop, checkpoint=1).run(params, {}, x, y, steps=3).losses

    with pytest.raises(ConfigError, match="cannot run inside torch.func transforms"):
        torch.func.vmap(one)(sx.unsqueeze(0), sy.unsqueeze(0))

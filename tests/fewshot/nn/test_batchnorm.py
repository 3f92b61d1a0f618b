"""StepBatchNorm semantics (docs/batchnorm.md): slot selection, train/eval, save/load,
conversion."""
import copy
import io

import pytest
import torch
from torch import nn

from fewshot.errors import ConfigError
from fewshot.nn import (
    StepBatchNorm2d,
    current_inner_step,
    inner_step,
    per_step_batchnorm,
    statistics_from,
)
from fewshot.nn.batchnorm import native_kernel_under_vmap


def _x(seed=0, shape=(6, 3, 4, 4)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_steps_one_matches_torch_batchnorm_in_train_and_eval():
    ours, ref = StepBatchNorm2d(3).double(), nn.BatchNorm2d(3).double()
    with torch.no_grad():
        ours.weight.copy_(torch.tensor([[1.5, -0.5, 2.0]]))
        ref.weight.copy_(ours.weight[0])
    for i in range(3):
        x = _x(i)
        assert torch.allclose(ours(x), ref(x), atol=1e-12)
    assert (torch.allclose(ours.running_mean[0], ref.running_mean)
            and torch.allclose(ours.running_var[0], ref.running_var))
    ours.eval(), ref.eval()
    x = _x(7)
    assert torch.allclose(ours(x), ref(x), atol=1e-12)


def test_step_t_uses_slot_t_and_clamps():
    bn = StepBatchNorm2d(3, steps=3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.arange(1, 10, dtype=torch.float64).view(3, 3))
        bn.bias.copy_(-torch.arange(1, 10, dtype=torch.float64).view(3, 3))
    x = _x()
    xhat = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(
        x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5)
    for t in range(5):
        with inner_step(t):
            assert current_inner_step() == t
            out = bn(x)
        s = min(t, 2)
        assert torch.allclose(out,
                              xhat * bn.weight[s].view(1, 3, 1, 1) + bn.bias[s].view(1, 3, 1, 1),
                              atol=1e-10)
    assert current_inner_step() == 0
    # only slots 0, 1 and 2 were written (2 three times: steps 2, 3, 4 are clamped)
    n = x.numel() // 3
    m1 = 0.1 * x.mean((0, 2, 3))
    assert torch.allclose(bn.running_mean[0], m1) and torch.allclose(bn.running_mean[1], m1)
    assert torch.allclose(bn.running_var[0],
                          0.9 + 0.1 * x.var((0, 2, 3), unbiased=False) * n / (n - 1))
    assert torch.allclose(bn.running_mean[2], (1 - 0.9 ** 3) * x.mean((0, 2, 3)))


def test_eval_uses_stored_slot_and_writes_nothing():
    bn = StepBatchNorm2d(3, steps=2).double().eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]))
        bn.running_var.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x = _x()
    with inner_step(1):
        out = bn(x)
    expected = (x - bn.running_mean[1].view(1, 3, 1, 1)) / torch.sqrt(
        bn.running_var[1].view(1, 3, 1, 1) + 1e-5)
    assert torch.allclose(out, expected)
    # per-example outputs do not depend on the rest of the batch (not transductive)
    with inner_step(1):
        assert torch.allclose(bn(x[:1]), out[:1])
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())


def test_state_dict_round_trip():
    bn = StepBatchNorm2d(3, steps=4).double()
    for t in range(4):
        with inner_step(t):
            bn(_x(t))
    buf = io.BytesIO()
    torch.save(bn.state_dict(), buf)
    buf.seek(0)
    fresh = StepBatchNorm2d(3, steps=4).double()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    for k, v in bn.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    bn.eval(), fresh.eval()
    with inner_step(3):
        assert torch.equal(bn(_x(9)), fresh(_x(9)))


def test_per_step_conversion_copies_torch_bn_into_every_slot():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 4),
                          nn.BatchNorm1d(4))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        model[1].running_mean.copy_(torch.tensor([0.5, 0.6, 0.7]))
    per_step_batchnorm(model, 3)
    assert isinstance(model[1], StepBatchNorm2d) and model[1].steps == 3
    assert torch.equal(model[1].weight, torch.tensor([[1.0, 2.0, 3.0]] * 3))
    assert torch.equal(model[1].running_mean, torch.tensor([[0.5, 0.6, 0.7]] * 3))
    assert model[4].steps == 3 and model(torch.zeros(2, 1, 4, 4)).shape == (2, 4)
    with pytest.raises(ConfigError,
                       match=r"batch norm '0' uses momentum=None \(cumulative average\): set a "
                             r"float"):
        per_step_batchnorm(nn.Sequential(nn.BatchNorm1d(2, momentum=None)), 2)


def test_bad_batchnorm_arguments():
    with pytest.raises(ConfigError, match="^StepBatchNorm steps must be >= 1, got 0$"):
        StepBatchNorm2d(3, steps=0)
    with pytest.raises(ConfigError,
                       match=r"^StepBatchNorm2d\(3\) got 4 channels: fix the layer width$"):
        StepBatchNorm2d(3)(torch.zeros(2, 4, 2, 2))
    with pytest.raises(ConfigError, match="^inner_step must be >= 0, got -1$"):
        with inner_step(-1):
            pass


@pytest.mark.parametrize("training,track", [(True, True), (False, True), (True, False)])
def test_native_and_elementary_paths_agree_to_second_order(training, track):
    """Outside vmap the layer uses F.batch_norm, under vmap elementary ops: same values, same first
    and second derivatives, same running-statistics updates."""
    g = torch.Generator().manual_seed(0)
    bn = StepBatchNorm2d(3, steps=2, track_running_stats=track).double().train(training)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5, generator=g)
        bn.bias.uniform_(-0.5, 0.5, generator=g)
        if track:
            bn.running_mean.uniform_(-1, 1, generator=g)
            bn.running_var.uniform_(0.5, 2, generator=g)
    x = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    outs = []
    for path in ("native", "elementary"):
        layer = copy.deepcopy(bn)
        with inner_step(1):
            y = layer(x) if path == "native" else layer._elementary(x, 1, training or not track)
        (gx,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
        # None: affine in x (eval)
        (ggx,) = torch.autograd.grad((gx ** 2).sum(), x, allow_unused=True)
        ggx = torch.zeros_like(x) if ggx is None else ggx
        outs.append((y, gx, ggx, [b.clone() for b in layer.buffers()]))
    (y1, g1, h1, b1), (y2, g2, h2, b2) = outs
    assert torch.allclose(y1, y2, atol=1e-12) and torch.allclose(g1, g2, atol=1e-10)
    assert torch.allclose(h1, h2, atol=1e-8)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(b1, b2))
    if training and track:
        assert not torch.equal(b1[0], bn.running_mean)  # the slot was updated, by both paths alike


@pytest.mark.parametrize("training", [True, False])
def test_statistics_from_normalises_every_row_with_the_first_rows_statistics(training):
    bn = StepBatchNorm2d(3, steps=2).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([[1.0, 2.0, -1.0], [0.5, 1.5, 3.0]]))
        bn.bias.copy_(torch.tensor([[0.1, -0.2, 0.3], [1.0, 2.0, 3.0]]))
    bn.train(training)
    a, b = _x(30, (4, 3, 5, 5)), _x(31, (7, 3, 5, 5)) * 3 + 1
    mean = a.mean((0, 2, 3), keepdim=True)
    var = a.var((0, 2, 3), unbiased=False, keepdim=True)
    w, c = bn.weight[1].view(1, 3, 1, 1), bn.bias[1].view(1, 3, 1, 1)
    with torch.no_grad(), inner_step(1), statistics_from(4):
        out = bn(torch.cat([a, b]))
    # batch statistics of the first 4 rows for all 11; running stats from those rows alone
    if training:
        expected = (torch.cat([a, b]) - mean) / torch.sqrt(var + 1e-5) * w + c
        assert torch.allclose(out, expected, atol=1e-12)
        assert torch.allclose(bn.running_mean[1], 0.1 * mean.flatten(), atol=1e-12)
        assert torch.allclose(bn.running_var[1], 0.9 + 0.1 * var.flatten() * 100 / 99, atol=1e-12)
        assert torch.equal(bn.running_mean[0], torch.zeros(3))
    else:  # stored statistics: the block changes nothing
        with torch.no_grad(), inner_step(1):
            assert torch.equal(out, bn(torch.cat([a, b])))


def test_statistics_from_under_vmap_and_validation():
    # (the learners pass per-task buffers)
    bn = StepBatchNorm2d(3, track_running_stats=False).double()
    xs = _x(32, (2, 6, 3, 4, 4))

    def f(x):
        with statistics_from(2):
            return bn(x)

    batched = torch.func.vmap(f, randomness="same")(xs)
    for i in range(2):
        with statistics_from(2):
            assert torch.allclose(batched[i], bn(xs[i]), atol=1e-12)
    with pytest.raises(ConfigError, match="at least 1 row"):
        with statistics_from(0):
            pass


@pytest.mark.parametrize("training", [True, False])
def test_bf16_activations_take_the_native_kernel_with_float32_statistics(training):
    """Under autocast a float32 layer given bf16 activations outside vmap runs the native kernel's
    mixed-type path: the same statistics, running-buffer update and normalisation as float32 on the
    same (bf16) values, only the output rounded to bf16, and first and second derivatives within
    bf16's rounding of float32's."""
    g = torch.Generator().manual_seed(3)
    bn = StepBatchNorm2d(3, steps=2).train(training)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5, generator=g)
        bn.bias.uniform_(-0.5, 0.5, generator=g)
        bn.running_mean.uniform_(-1, 1, generator=g)
        bn.running_var.uniform_(0.5, 2, generator=g)
    # a bf16 variance: 0
    near_constant = (torch.randn(6, 3, 5, 5, generator=g) * 0.01 + 3.0).bfloat16()
    plain = torch.randn(6, 3, 5, 5, generator=g).bfloat16()
    w = torch.randn(6, 3, 5, 5, generator=g)
    for x16, derivatives in ((near_constant, False), (plain, True)):
        results = []
        for x in (x16.float().requires_grad_(), x16.clone().requires_grad_()):
            layer = copy.deepcopy(bn)
            with inner_step(1):
                y = layer(x)
            (gx,) = torch.autograd.grad((y.float() * w).sum(), x, create_graph=True)
            (ggx,) = torch.autograd.grad((gx.float() ** 2).sum(), x, allow_unused=True)
            ggx = torch.zeros_like(x) if ggx is None else ggx  # None: affine in x (eval)
            results.append((y.detach(), gx.detach(), ggx, [b.clone() for b in layer.buffers()]))
        (y32, g32, h32, b32), (y16, g16, h16, b16) = results
        assert y16.dtype == torch.bfloat16 and all(b.dtype == torch.float32 for b in b16)
        # y32 rounded to bf16, up to 1 ulp
        assert torch.allclose(y16.float(), y32, rtol=2 ** -8, atol=2 ** -8)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(b16, b32))
        if training:
            # the float32 slot was updated from the bf16 input
            assert not torch.equal(b16[0], bn.running_mean)
        if derivatives:  # bf16 rounds the layer's gradients (0.4% each), float32 does not
            for lo, hi in ((g16, g32), (h16, h32)):
                assert float((lo.float() - hi).norm()) <= 2 ** -6 * float(hi.norm()) + 1e-6


def test_a_layer_cast_to_bf16_stays_bf16():
    bn = StepBatchNorm2d(3).bfloat16()
    x = torch.randn(4, 3, 2, 2).bfloat16()
    assert bn(x).dtype == torch.bfloat16 and bn.running_mean.dtype == torch.bfloat16


def test_bf16_activations_under_vmap_are_normalised_in_float32_and_returned_in_bf16():
    """The elementary path (vmap) casts bf16 input to float32 for the statistics and the
    normalisation, and rounds only its output back to bf16: equal to the float32 result on the same
    values, up to one rounding."""
    g = torch.Generator().manual_seed(5)
    # near-constant: a bf16 variance: 0
    x16 = (torch.randn(2, 6, 3, 4, 4, generator=g) * 0.01 + 3.0).bfloat16()
    outs = []
    for x in (x16.float(), x16):
        bn = StepBatchNorm2d(3, track_running_stats=False)  # batch statistics, no buffer to batch
        y = bn(x[0]).detach()  # outside vmap: the native kernel
        yv = torch.func.vmap(bn, randomness="same")(x)
        outs.append((y, yv))
    (y32, yv32), (y16, yv16) = outs
    assert yv16.dtype == torch.bfloat16 and y16.dtype == torch.bfloat16
    assert torch.allclose(yv16.float(), yv32, rtol=2 ** -8, atol=2 ** -8)
    # normalised: the float32 statistics saw the spread bf16 would have lost
    assert float(yv32.std()) > 0.5


@pytest.mark.parametrize("training,track", [(False, True), (True, False)])
def test_bf16_activations_on_the_native_kernel_under_vmap_as_evaluate_runs_it(training, track):
    """Evaluation's batched path (``native_kernel_under_vmap``) under autocast: vmap's batching rule
    has no mixed-type path, so bf16 activations go in as float32; the output, rounded back to bf16,
    equals float32's on the same values up to one rounding."""
    g = torch.Generator().manual_seed(6)
    x16 = torch.randn(2, 6, 3, 4, 4, generator=g).bfloat16()
    bn = StepBatchNorm2d(3, track_running_stats=track).train(training)
    if track:
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1, generator=g)
            bn.running_var.uniform_(0.5, 2, generator=g)
    outs = []
    for x in (x16.float(), x16):
        with torch.no_grad(), native_kernel_under_vmap():
            outs.append(torch.func.vmap(copy.deepcopy(bn), randomness="same")(x))
    assert outs[1].dtype == torch.bfloat16
    assert torch.allclose(outs[1].float(), outs[0], rtol=2 ** -8, atol=2 ** -8)

"""bf16 autocast (fewshot.precision): meta-gradients close to float32's for every registered
learner, on both task-batching paths, with float32 losses, weights and batch-norm buffers."""
from __future__ import annotations

import warnings

import pytest
import torch

from fewshot import precision
from fewshot.errors import FewshotWarning
from fewshot.learners import LEARNERS
from tests.fewshot.learners.test_contract import _batch, _learner

# bf16 keeps 8 significant bits: each product is rounded to a relative 2**-9 (0.2%); a meta-gradient
# sums a few hundred such products through two inner steps and their second-order terms, whose
# rounding
# errors add up like a random walk, so a few percent of the gradient's norm is what bf16 is expected
# to
# cost, and a bug (a wrong cast, a float32 buffer updated from bf16 values) costs far more.
REL_TOL = 0.08  # measured here: 0.003 (MAML++) to 0.077 (iMAML, loop) relative L2 error


def _float32(name: str, batching: str):
    learner = _learner(name, task_batching=batching).float()
    b = _batch(3)
    batch = type(b)(b.support_x.float(), b.support_y, b.query_x.float(), b.query_y, b.ways)
    return learner, batch


# autocast emulates bf16 where the CPU lacks it: runs anywhere
def _meta_grads(learner, batch, dtype):
    learner.zero_grad(set_to_none=True)
    with precision.autocast("cpu", dtype):
        out = learner.meta_loss(batch, backward=True)
    return out, torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten()
                           for p in learner.parameters()])


@pytest.mark.parametrize("name", sorted(LEARNERS))
@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_bf16_meta_gradients_agree_with_float32(name, batching):
    learner, batch = _float32(name, batching)
    state = {k: v.clone() for k, v in learner.state_dict().items()}
    out32, g32 = _meta_grads(learner, batch, None)
    buffers32 = {k: v.clone() for k, v in learner.state_dict().items()}
    learner.load_state_dict(state)
    out16, g16 = _meta_grads(learner, batch, torch.bfloat16)
    assert out16.loss.dtype == torch.float32  # losses are computed in float32
    assert g16.dtype == torch.float32 and bool(g16.isfinite().all())
    rel = float((g16 - g32).norm() / g32.norm())
    assert 0 < rel <= REL_TOL, rel  # > 0: the bf16 path really ran in bf16
    assert out16.loss.item() == pytest.approx(out32.loss.item(), rel=REL_TOL)
    # batch-norm running statistics stay float32 and close
    for k, v in learner.state_dict().items():
        assert v.dtype == buffers32[k].dtype, k
        if v.is_floating_point():
            assert torch.allclose(v, buffers32[k], rtol=REL_TOL, atol=REL_TOL), k


def test_bf16_on_a_cpu_without_it_warns_once_and_trains_in_float32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert precision.resolve_precision("bf16", "cpu") is None
    assert len(caught) == 1 and issubclass(caught[0].category, FewshotWarning)
    assert "no native bf16" in str(caught[0].message) and "float32" in str(caught[0].message)
    assert precision.resolve_precision("fp32", "cpu") is None


def test_a_config_written_before_precision_existed_still_loads():
    from fewshot.config import config_from_dict, get_preset

    plain = get_preset("sinusoid-maml").to_dict()
    plain.pop("precision")
    assert config_from_dict({**plain, "bf16": True}).precision == "bf16"
    assert config_from_dict({**plain, "bf16": False}).precision == "fp32"

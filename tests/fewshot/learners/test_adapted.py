"""``learner.adapt`` returns an AdaptedModel: callable on any number of examples without the support
set, equal to the functional ``predict`` and to ``evaluate``'s numbers, in every batch-norm mode."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fewshot.errors import FewshotError
from fewshot.learners import MAML, AdaptedModel, MAMLConfig
from fewshot.nn import Conv4
from tests.fewshot.learners.tasks import cls_batch

MODES = ["transductive", "support", "running", "frozen"]


def _learner(bn_mode: str, per_step_bn: bool = False, batching: str = "loop",
             seed: int = 0) -> MAML:
    torch.manual_seed(seed)  # test-only module init
    model = Conv4(1, 3, hidden=4, image_size=8, blocks=2).double()
    return MAML(model,
                MAMLConfig(inner_steps=2, inner_lr=0.3, bn_mode=bn_mode, per_step_bn=per_step_bn,
                                  task_batching=batching)).eval()


@pytest.mark.parametrize("bn_mode", MODES)
@pytest.mark.parametrize("per_step_bn", [False, True])
def test_adapted_model_predicts_as_evaluate_and_as_the_functional_predict(bn_mode, per_step_bn):
    learner = _learner(bn_mode, per_step_bn)
    batch = cls_batch(3, b=3, size=8)
    result = learner.evaluate(batch)
    for i in range(len(batch)):
        sx, sy, qx, qy = batch.support_x[i], batch.support_y[i], batch.query_x[i], batch.query_y[i]
        adapted = learner.adapt(sx, sy)
        assert isinstance(adapted, AdaptedModel) and adapted.steps == int(result["step"][i])
        out = adapted(qx)
        assert torch.allclose(F.cross_entropy(out, qy), result["loss"][i], atol=1e-12, rtol=0)
        functional = learner.predict(qx, adapted.params, steps=adapted.steps, support_x=sx)
        assert torch.allclose(out, functional, atol=1e-12, rtol=0)
        assert torch.equal(learner.predict(qx, adapted), out)  # predict takes the adapted model too
        assert adapted.support_losses.shape == (adapted.steps_run + 1,)


@pytest.mark.parametrize("bn_mode", ["support", "running", "frozen"])
def test_one_example_alone_gets_its_outputs_in_a_batch(bn_mode):
    learner = _learner(bn_mode)
    t = cls_batch(4, b=1, size=8, queries=3).task(0)
    adapted = learner.adapt(t.support_x, t.support_y)
    whole = adapted(t.query_x)
    alone = torch.cat([adapted(t.query_x[j:j + 1]) for j in range(len(t.query_x))])
    assert torch.allclose(alone, whole, atol=1e-12, rtol=0)


def test_support_statistics_are_taken_once_at_adaptation():
    learner = _learner("support")
    t = cls_batch(5, b=1, size=8).task(0)
    adapted = learner.adapt(t.support_x, t.support_y)
    rows: list[int] = []
    first = next(m for m in learner.model.modules() if isinstance(m, torch.nn.Conv2d))
    handle = first.register_forward_hook(lambda m, inp, out: rows.append(inp[0].shape[0]))
    try:
        adapted(t.query_x[:1])
        adapted(t.query_x)
    finally:
        handle.remove()
    assert rows == [1, len(t.query_x)]  # the support set is never run again
    # one entry per batch-norm layer
    assert adapted.statistics is not None and len(adapted.statistics) == 2


def test_a_bare_parameter_dict_still_needs_the_support_set_in_support_mode():
    learner = _learner("support")
    t = cls_batch(6, b=1, size=8).task(0)
    params = learner.adapt(t.support_x, t.support_y).params
    with pytest.raises(FewshotError, match=r"adapted\(x\)"):
        learner.predict(t.query_x, params)


def test_the_adapted_models_params_are_every_trainable_parameter_for_functional_call():
    learner = _learner("transductive")
    t = cls_batch(7, b=1, size=8).task(0)
    adapted = learner.adapt(t.support_x, t.support_y)
    assert not isinstance(adapted, dict) and adapted.learner is learner
    assert list(adapted.params) == [n for n, p in learner.model.named_parameters()
                                    if p.requires_grad]
    out = torch.func.functional_call(learner.model,
                                     {**adapted.params, **dict(learner.model.named_buffers())},
                                     (t.query_x,))
    assert out.shape == (len(t.query_x), 3)

"""fewshot.learners.base: what every GradientLearner does whatever its rule (a MAML stands in for them):
state round trip, the non-finite check, a user loss, eval steps, adapt/predict == evaluate."""

import pytest
import torch
import torch.nn.functional as F

from episodes import TaskBatch
from fewshot.errors import AdaptationError, FewshotError
from fewshot.learners import MAML, MAMLConfig
from tests.fewshot.learners.tasks import cls_batch as _cls_batch
from tests.fewshot.learners.tasks import conv as _conv
from tests.fewshot.learners.tasks import mlp as _mlp
from tests.fewshot.learners.tasks import reg_batch as _reg_batch


def test_a_model_without_trainable_parameters_is_refused():
    frozen = _mlp(0)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(FewshotError, match="no trainable parameters"):
        MAML(frozen)


def test_learner_state_dict_round_trip():
    cfg = MAMLConfig.mamlpp(inner_steps=2)
    learner = MAML(_conv(18), cfg)
    learner.meta_loss(_cls_batch(19))
    fresh = MAML(_conv(99), cfg)
    fresh.load_state_dict(learner.state_dict())
    batch = _cls_batch(20)
    a, b = learner.eval().evaluate(batch), fresh.eval().evaluate(batch)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_nonfinite_adaptation_names_the_step(batching):
    learner = MAML(_mlp(0), MAMLConfig(inner_steps=3, inner_lr=1e200, task_batching=batching))
    with pytest.raises(AdaptationError, match="inner step 1 of 3"):
        learner.meta_loss(_reg_batch(0))
    b = _reg_batch(0)
    sx = b.support_x.clone()
    sx[1, 0, 0] = float("nan")
    with pytest.raises(AdaptationError, match="inner step 0"):
        MAML(_mlp(0)).meta_loss(TaskBatch(sx, b.support_y, b.query_x, b.query_y, None))


def test_user_loss_function_is_used():
    learner = MAML(_mlp(0), MAMLConfig(inner_steps=1, inner_lr=0.1), loss_fn=F.l1_loss)
    t = _reg_batch(1).task(0)
    model = learner.model
    grads = torch.autograd.grad(F.l1_loss(model(t.support_x), t.support_y), list(model.parameters()))
    params = learner.adapt(t.support_x, t.support_y).params
    for (name, p), g in zip(model.named_parameters(), grads):
        assert torch.allclose(params[name], p - 0.1 * g)


def test_evaluate_uses_eval_steps_in_eval_mode_and_matches_adapt_predict():
    learner = MAML(_mlp(21), MAMLConfig(inner_steps=1, eval_steps=3, inner_lr=0.2))
    batch = _reg_batch(22)
    for training, steps in ((True, 1), (False, 3)):
        learner.train(training)
        got = learner.evaluate(batch)["mse"]
        for i in range(len(batch)):
            t = batch.task(i)
            params = learner.adapt(t.support_x, t.support_y)
            expected = F.mse_loss(learner.predict(t.query_x, params), t.query_y)
            manual = F.mse_loss(learner.predict(t.query_x, learner.adapt(t.support_x, t.support_y, steps=steps)),
                                t.query_y)
            assert got[i].item() == pytest.approx(expected.item(), abs=1e-12)
            assert got[i].item() == pytest.approx(manual.item(), abs=1e-12)
    assert learner.evaluate(batch, steps=2)["mse"].shape == (len(batch),)

"""fewshot.learners.base: what every GradientLearner does whatever its rule (a MAML stands in for
them): state round trip, the non-finite check, a user loss, eval steps, adapt/predict ==
evaluate."""

import pytest
import torch
import torch.nn.functional as F

from episodes import TaskBatch
from fewshot.errors import AdaptationError, FewshotError
from fewshot.learners import MAML, MAMLConfig
from tests.fewshot.learners.tasks import cls_batch as _cls_batch
from tests.fewshot.learners.tasks import conv as _conv
from tests.fewshot.learners.tasks import meta_grads as _meta_grads
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
    grads = torch.autograd.grad(F.l1_loss(model(t.support_x), t.support_y),
                                list(model.parameters()))
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
            manual = F.mse_loss(
                learner.predict(t.query_x, learner.adapt(t.support_x, t.support_y, steps=steps)),
                                t.query_y)
            assert got[i].item() == pytest.approx(expected.item(), abs=1e-12)
            assert got[i].item() == pytest.approx(manual.item(), abs=1e-12)
    assert learner.evaluate(batch, steps=2)["mse"].shape == (len(batch),)


class _TwiceMAML(MAML):
    """A learner through the public hook: MAML's objective on every task, doubled (with an
    extra)."""

    def task_objective(self, params, buffers, task, settings):
        maml = super().task_objective(params, buffers, task, settings)
        extras = {"support_before": maml.support_losses[0].detach()}
        return maml._replace(total=2 * maml.total, extras=extras)


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_task_objective_is_the_training_hook_and_evaluation_never_calls_it(batching):
    """A learner that implements ``task_objective`` gets exactly its objective's meta-gradient in
    training (here twice MAML's) and its extras stacked per task; evaluation is every learner's."""
    cfg = MAMLConfig(inner_steps=2, inner_lr=0.4, task_batching=batching)
    maml, twice = MAML(_conv(3), cfg), _TwiceMAML(_conv(3), cfg)
    batch = _cls_batch(4)
    out, grads = _meta_grads(maml, batch)
    out2, grads2 = _meta_grads(twice, batch)
    assert torch.allclose(out2.loss, 2 * out.loss)
    assert all(torch.allclose(g2, 2 * g, atol=1e-6) for g, g2 in zip(grads, grads2))
    assert out2.metrics["accuracy"] == out.metrics["accuracy"]
    result = twice.run_batch(batch, twice.task_settings(batch.ways, 2), sample=False)
    assert result.extras["support_before"].shape == (len(batch),)
    a, b = maml.eval().evaluate(batch), twice.eval().evaluate(batch)
    assert all(torch.equal(a[k], b[k]) for k in a)

"""fewshot.learners.bn_forward: the four bn_mode semantics (write-back as the mean over tasks,
evaluation never writes, stored statistics in eval mode, the support mode against a hand-written
oracle)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import ConfigError, FewshotError
from fewshot.learners import MAML, MAMLConfig
from fewshot.nn import StepBatchNorm1d
from tests.fewshot.learners.tasks import cls_batch as _cls_batch
from tests.fewshot.learners.tasks import conv as _conv
from tests.fewshot.learners.tasks import gen as _gen
from tests.fewshot.learners.tasks import meta_grads as _meta_grads
from tests.fewshot.learners.tasks import mlp as _mlp
from tests.fewshot.learners.tasks import reg_batch as _reg_batch


def _bn_first(seed=0):
    torch.manual_seed(seed)  # test-only module init
    return nn.Sequential(StepBatchNorm1d(3), nn.Linear(3, 2)).double()


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_running_stats_are_written_back_as_mean_over_tasks(batching):
    # higher #103: stats updated during meta-training must land in the module's buffers
    learner = MAML(_bn_first(),
                   MAMLConfig(inner_steps=1, per_step_bn=True, bn_mode="running",
                              task_batching=batching))
    bn = learner.model[0]
    assert bn.steps == 2
    batch = _reg_batch(12, b=4)
    learner.train().meta_loss(batch)
    n = batch.support_x.shape[1]
    mu_s, mu_q = batch.support_x.mean(1).mean(0), batch.query_x.mean(1).mean(0)
    var_s = (batch.support_x.var(1, unbiased=False) * n / (n - 1)).mean(0)
    assert torch.allclose(bn.running_mean[0], 0.1 * mu_s, atol=1e-12)   # support forward: slot 0
    # query after 1 update: slot 1
    assert torch.allclose(bn.running_mean[1], 0.1 * mu_q, atol=1e-12)
    assert torch.allclose(bn.running_var[0], 0.9 + 0.1 * var_s, atol=1e-12)


@pytest.mark.parametrize("mode", ["running", "transductive", "support", "frozen"])
def test_evaluation_paths_never_write_buffers(mode):
    # HowToTrainYourMAML #42: a stats "backup" that aliases the live buffers
    learner = MAML(_conv(13, bn_steps=3), MAMLConfig(inner_steps=2, per_step_bn=True, bn_mode=mode))
    with torch.no_grad():
        for _name, buf in learner.model.named_buffers():
            buf.copy_(torch.rand(buf.shape, generator=_gen(14), dtype=buf.dtype) + 0.5)
    before = {k: v.clone() for k, v in learner.model.named_buffers()}
    batch = _cls_batch(15)
    for training in (True, False):
        learner.train(training)
        learner.evaluate(batch)
        t = batch.task(0)
        learner.predict(t.query_x, learner.adapt(t.support_x, t.support_y), support_x=t.support_x)
        for k, v in learner.model.named_buffers():
            assert torch.equal(v, before[k]), (training, k)
    learner.eval().meta_loss(batch)
    learner.train().meta_loss(batch)
    changed = any(not torch.equal(v, before[k]) for k, v in learner.model.named_buffers())
    assert changed == (mode != "frozen")


@pytest.mark.parametrize("mode", ["running", "frozen", "support", "transductive"])
def test_eval_mode_uses_stored_statistics_unless_transductive(mode):
    # HowToTrainYourMAML #3: training=True hard-wired at eval
    learner = MAML(_conv(16), MAMLConfig(inner_steps=1, bn_mode=mode)).eval()
    t = _cls_batch(17).task(0)
    params = learner.adapt(t.support_x, t.support_y)
    full = learner.predict(t.query_x, params, support_x=t.support_x)
    single = learner.predict(t.query_x[:1], params, support_x=t.support_x)
    assert torch.allclose(full[:1], single, atol=1e-12) == (mode != "transductive")


def _bn_mlp_by_hand(params, x, stats_x):
    """Linear -> batch norm (statistics of ``stats_x``'s features, biased variance) -> tanh ->
    Linear, written out with tensor ops: the oracle for bn_mode="support" (it shares no code with
    StepBatchNorm)."""
    w1, b1, g, beta, w2, b2 = params

    def features(z):
        return z @ w1.T + b1

    h, hs = features(x), features(stats_x)
    mean, var = hs.mean(0), hs.var(0, unbiased=False)
    return torch.tanh((h - mean) / torch.sqrt(var + 1e-5) * g + beta) @ w2.T + b2


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_support_mode_meta_gradients_match_a_hand_written_oracle(batching):
    # queries normalised with the support set's statistics at the same step, differentiated through
    # them
    model, batch, steps, lr = _mlp(5, bn=True), _reg_batch(6), 2, 0.3
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.2, 0.8, 1.5, 0.9, 1.1, 0.7]], dtype=torch.float64))
        model[1].bias.copy_(torch.tensor([[0.1, -0.2, 0.3, 0.0, -0.1, 0.2]], dtype=torch.float64))
    learner = MAML(copy.deepcopy(model),
                   MAMLConfig(inner_steps=steps, inner_lr=lr, bn_mode="support",
                                                    task_batching=batching))
    out, ours = _meta_grads(learner, batch)
    init = [p.detach().clone().requires_grad_(True) for p in
            (model[0].weight, model[0].bias, model[1].weight[0], model[1].bias[0], model[3].weight,
             model[3].bias)]
    total = 0.0
    for i in range(len(batch)):
        t = batch.task(i)
        p = list(init)
        # norm affine parameters are meta-learned, not adapted (adapt_norm=False)
        for _ in range(steps):
            loss = F.mse_loss(_bn_mlp_by_hand(p, t.support_x, t.support_x), t.support_y)
            grads = torch.autograd.grad(loss, [p[j] for j in (0, 1, 4, 5)], create_graph=True)
            for j, gj in zip((0, 1, 4, 5), grads):
                p[j] = p[j] - lr * gj
        total = total + F.mse_loss(_bn_mlp_by_hand(p, t.query_x, t.support_x),
                                   t.query_y) / len(batch)
    ref = torch.autograd.grad(total, init)
    assert out.loss.item() == pytest.approx(total.item(), abs=1e-12)
    got = dict(zip([n for n, _ in learner.named_parameters()], ours))
    for name, r in zip(("0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"), ref):
        assert torch.allclose(got["model." + name].reshape(r.shape), r, atol=1e-10), name


def test_support_mode_needs_the_support_set_and_fewshot_batch_norm():
    learner = MAML(_conv(21), MAMLConfig(inner_steps=1, bn_mode="support")).eval()
    t = _cls_batch(22).task(0)
    params = learner.adapt(t.support_x, t.support_y).params
    # a bare parameter dict needs the support set
    with pytest.raises(FewshotError, match="support_x=support_x"):
        learner.predict(t.query_x, dict(params))
    # the inner loop is the transductive one (the support batch is the whole batch)
    trans = MAML(copy.deepcopy(learner.model), MAMLConfig(inner_steps=1)).eval()
    assert all(torch.equal(params[k], v)
               for k, v in trans.adapt(t.support_x, t.support_y).params.items())
    torch_bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(),
                             nn.Linear(72, 3)).double()
    with pytest.raises(ConfigError, match="per_step_batchnorm"):
        MAML(torch_bn, MAMLConfig(inner_steps=1, bn_mode="support")).evaluate(_cls_batch(23))

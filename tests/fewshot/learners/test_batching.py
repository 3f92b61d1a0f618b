"""fewshot.learners.batching: the loop/vmap choice (model facts read once) and the two runners."""

import copy

import pytest
import torch
from torch import nn

from fewshot.errors import ConfigError
from fewshot.learners import MAML, MAMLConfig, TaskResult
from fewshot.learners.batching import ModelFacts, run_loop, run_vmap
from fewshot.nn import per_step_batchnorm
from fewshot.training.calibrate import make_per_step
from tests.fewshot.learners.tasks import cls_batch as _cls_batch
from tests.fewshot.learners.tasks import conv as _conv
from tests.fewshot.learners.tasks import gen as _gen
from tests.fewshot.learners.tasks import mlp as _mlp
from tests.fewshot.learners.tasks import reg_batch as _reg_batch


def test_vmap_with_torch_batchnorm_is_refused_and_auto_choice():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    with pytest.raises(ConfigError, match="task_batching='loop'"):
        MAML(model, MAMLConfig(task_batching="vmap")).meta_loss(_reg_batch())
    auto = MAML(model, MAMLConfig(task_batching="auto"))
    assert auto.task_batching_for("cpu") == "loop" and auto.task_batching_for("cuda") == "loop"
    assert torch.isfinite(auto.meta_loss(_reg_batch()).loss)
    assert MAML(_mlp(0)).task_batching_for("cpu") == "vmap"
    assert MAML(_conv(0)).task_batching_for("cpu") == "loop"
    # by work size on CPU: small tasks (5-way 1-shot 28x28, 1 query) vmap, large ones (15 queries)
    # loop
    assert MAML(_conv(0)).task_batching_for("cpu", 10 * 28 * 28) == "vmap"
    assert MAML(_conv(0)).task_batching_for("cpu", 80 * 28 * 28) == "loop"
    assert MAML(_conv(0)).task_batching_for("cuda") == "vmap"
    assert MAML(nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.1))).task_batching_for("cuda") == "loop"
    assert MAML(_conv(0), MAMLConfig(task_batching="vmap")).task_batching_for("cpu") == "vmap"


def test_the_model_facts_are_read_once_at_construction_not_per_batch(monkeypatch):
    reads = []
    original = ModelFacts.of
    monkeypatch.setattr(ModelFacts, "of",
                        classmethod(lambda cls, model: reads.append(model) or original(model)))
    learner = MAML(_conv(0), MAMLConfig(inner_steps=1))
    assert len(reads) == 1
    batch = _cls_batch(1)
    learner.meta_loss(batch)
    learner.meta_backward(batch)
    learner.eval().evaluate(batch)
    assert len(reads) == 1
    learner.model_changed()
    assert reads == [learner.model, learner.model]


def test_model_changed_rereads_the_layers_after_an_in_place_conversion():
    torch_bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()
    learner = MAML(copy.deepcopy(torch_bn), MAMLConfig(inner_steps=1))
    assert learner.task_batching_for("cuda") == "loop"
    per_step_batchnorm(learner.model, 1)
    # facts are not re-read behind the learner's back
    assert learner.task_batching_for("cuda") == "loop"
    learner.model_changed()
    assert learner.task_batching_for("cuda") == "vmap"
    # make_per_step converts and tells the learner: bn_mode="support" then works on the converted
    # layers
    converted = MAML(copy.deepcopy(torch_bn), MAMLConfig(inner_steps=1))
    make_per_step(converted, 1, bn_mode="support")
    assert converted.task_batching_for("cuda") == "vmap"
    assert converted.eval().evaluate(_reg_batch(2))["mse"].isfinite().all()


def _toy_task(w):
    """A pure per-task computation shaped like GradientLearner._task: a linear fit's losses."""
    def task(bufs, sx, sy, qx, qy, noise):
        shift = 0.0 if noise is None else noise.sum()
        q_loss = ((qx @ w + shift - qy) ** 2).mean()
        s_loss = ((sx @ w - sy) ** 2).mean().reshape(1)
        new = {k: v + sx.mean() for k, v in bufs.items()}
        return TaskResult(q_loss, q_loss.detach(), q_loss.detach().sqrt(), s_loss, new,
                          torch.zeros((), dtype=torch.long))
    return task


@pytest.mark.parametrize("noisy", [False, True])
def test_loop_and_vmap_runners_stack_the_same_results_and_gradients(noisy):
    batch = _reg_batch(3, b=4)
    noise = torch.rand(4, 2, generator=_gen(4), dtype=torch.float64) if noisy else None
    buffers = {"m": torch.zeros(2, dtype=torch.float64)}
    got = {}
    for name, runner in (("loop", run_loop), ("vmap", run_vmap)):
        w = torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(3, 2).requires_grad_(True)
        graph = runner(_toy_task(w), buffers, batch, noise, backward=False)
        (g,) = torch.autograd.grad(graph.total.mean(), [w])
        freed = runner(_toy_task(w), buffers, batch, noise, backward=True)
        assert not freed.total.requires_grad and torch.allclose(w.grad, g, atol=1e-14, rtol=0)
        got[name] = (graph, g)
    (lr, lg), (vr, vg) = got["loop"], got["vmap"]
    assert torch.allclose(lg, vg, atol=1e-14, rtol=0) and lg.abs().max() > 0
    for field in ("total", "query_loss", "metric", "support_losses", "step"):
        assert getattr(lr, field).shape == (4,) + getattr(lr, field).shape[1:]
        assert torch.allclose(getattr(lr, field).double(), getattr(vr, field).double(), atol=1e-14,
                              rtol=0), field
    assert torch.equal(lr.buffers["m"], vr.buffers["m"]) and lr.buffers["m"].shape == (4, 2)
    # each task got its own copy
    assert torch.equal(buffers["m"], torch.zeros(2, dtype=torch.float64))

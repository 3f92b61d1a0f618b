"""Per-step batch-norm calibration (fewshot/training/calibrate.py): slots hold the average batch
statistics of their forward, and the calibrated learner is non-transductive in eval mode."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from episodes import TaskBatch
from fewshot.errors import ConfigError
from fewshot.learners import MAML, MAMLConfig
from fewshot.nn import StepBatchNorm1d
from fewshot.training.calibrate import calibrate_batchnorm, make_per_step, transfer_state

WAYS, SHOTS, QUERIES, FEATURES = 3, 2, 4, 5


class Tasks:
    """A seeded source of 3-way tasks of 5 features, each class with its own mean (shifted per
    task)."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int) -> TaskBatch:
        def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
            y = torch.arange(WAYS).repeat_interleave(per_class).expand(batch_size, -1)
            centres = torch.randn(batch_size, WAYS, FEATURES, generator=self.gen)
            x = centres.gather(1, y.unsqueeze(-1).expand(-1, -1, FEATURES))
            return x + 0.5 * torch.randn(x.shape, generator=self.gen) + 3.0, y.clone()

        sx, sy = draw(SHOTS)
        qx, qy = draw(QUERIES)
        return TaskBatch(sx, sy, qx, qy, WAYS)


def _learner() -> MAML:
    torch.manual_seed(0)
    layers: list[nn.Module] = [StepBatchNorm1d(FEATURES), nn.Linear(FEATURES, 8),
                               StepBatchNorm1d(8), nn.ReLU(),
                               nn.Linear(8, WAYS)]
    return MAML(nn.Sequential(*layers), MAMLConfig(inner_steps=2, eval_steps=2, inner_lr=0.3,
                                                   task_batching="loop"))


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean(0), x.var(0, unbiased=True)


def test_slots_hold_the_average_batch_statistics_of_their_forward():
    """The first layer normalises the raw inputs, whatever the adapted parameters: slots 0..steps-1
    must hold the mean over tasks of the support statistics, slot ``steps`` that of the query
    ones."""
    learner = _learner()
    make_per_step(learner, 2)
    # 4 + 4 + 2 tasks
    used = calibrate_batchnorm(learner, Tasks(7), tasks=10, steps=2, batch_size=4)
    assert used == 10
    src = Tasks(7)
    tasks = [src.sample(4), src.sample(4), src.sample(2)]
    support = [_stats(t.support_x[i]) for t in tasks for i in range(len(t))]
    query = [_stats(t.query_x[i]) for t in tasks for i in range(len(t))]
    bn = learner.model[0]
    for slot in (0, 1):
        torch.testing.assert_close(bn.running_mean[slot],
                                   torch.stack([m for m, _ in support]).mean(0))
        torch.testing.assert_close(bn.running_var[slot],
                                   torch.stack([v for _, v in support]).mean(0))
    torch.testing.assert_close(bn.running_mean[2], torch.stack([m for m, _ in query]).mean(0))
    torch.testing.assert_close(bn.running_var[2], torch.stack([v for _, v in query]).mean(0))
    # restored after calibrating
    assert learner.model[0].momentum == 0.1 and learner.config.bn_mode == "frozen"


def test_calibration_changes_no_parameter_and_leaves_unused_slots():
    learner = _learner()
    make_per_step(learner, 3)  # 4 slots, calibrate only 2 steps: slot 3 keeps its value
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    calibrate_batchnorm(learner, Tasks(1), tasks=3, steps=2)
    after = learner.state_dict()
    for name, _ in learner.named_parameters():
        assert torch.equal(before[name], after[name])
    assert torch.equal(after["model.0.running_mean"][3], before["model.0.running_mean"][3])
    assert not torch.equal(after["model.0.running_mean"][0], before["model.0.running_mean"][0])


def test_calibrated_learner_predicts_each_query_alone_as_in_a_batch():
    learner = _learner()
    make_per_step(learner, 2)
    calibrate_batchnorm(learner, Tasks(3), tasks=20, steps=2)
    learner.eval()
    task = Tasks(4).sample(1)
    params = learner.adapt(task.support_x[0], task.support_y[0])
    x = task.query_x[0]
    together = learner.predict(x, params)
    alone = torch.cat([learner.predict(x[i:i + 1], params) for i in range(len(x))])
    torch.testing.assert_close(alone, together)
    # transductive mode on the same weights does depend on the other queries (the contrast the test
    # needs)
    learner.config.bn_mode = "transductive"
    assert not torch.allclose(learner.predict(x[:1], params), learner.predict(x, params)[:1])


def test_calibration_refuses_what_it_cannot_do():
    learner = _learner()
    with pytest.raises(ConfigError, match="make_per_step"):
        calibrate_batchnorm(learner, Tasks(0), tasks=2)
    make_per_step(learner, 1)  # 2 slots, 3 steps asked
    with pytest.raises(ConfigError, match="fewer than 4 slots"):
        calibrate_batchnorm(learner, Tasks(0), tasks=2, steps=3)
    plain = MAML(nn.Sequential(nn.Linear(FEATURES, WAYS)), MAMLConfig(per_step_bn=True))
    with pytest.raises(ConfigError, match="no batch-norm layer"):
        calibrate_batchnorm(plain, Tasks(0), tasks=2)
    with pytest.raises(ConfigError, match="tasks"):
        calibrate_batchnorm(learner, Tasks(0), tasks=0)


def test_transfer_state_widens_slots_and_keeps_the_targets_inner_lr():
    source = _learner()
    target = MAML(
        nn.Sequential(StepBatchNorm1d(FEATURES), nn.Linear(FEATURES, 8), StepBatchNorm1d(8),
                      nn.ReLU(),
                                nn.Linear(8, WAYS)),
                  MAMLConfig(inner_steps=2, eval_steps=3, inner_lr=0.05, per_step_bn=True,
                             bn_mode="frozen"))
    assert target.model[0].steps == 4  # max(inner_steps, eval_steps) + 1 slots
    with torch.no_grad():
        source.model[0].running_mean.fill_(2.0)
    transfer_state(source, target)
    torch.testing.assert_close(target.model[1].weight, source.model[1].weight)
    assert torch.equal(target.model[0].running_mean, torch.full((4, FEATURES), 2.0))
    assert torch.equal(target.rule.lrs, torch.full_like(target.rule.lrs, 0.05))

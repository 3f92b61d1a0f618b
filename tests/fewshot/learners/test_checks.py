"""fewshot.learners.checks: task tensors that do not fit together, heads that do not fit the
tasks."""

import warnings

import pytest
import torch
from torch import nn

from episodes import TaskBatch
from fewshot.errors import AdaptationError, AdaptationWarning, FewshotError
from fewshot.learners import MAML
from fewshot.learners.checks import OutputWidths, raise_if_nonfinite, warn_if_rising
from fewshot.nn import Conv4
from tests.fewshot.learners.tasks import cls_batch as _cls_batch
from tests.fewshot.learners.tasks import conv as _conv


def test_batches_that_do_not_fit_together_or_the_head_are_refused_in_one_line():
    learner = MAML(_conv(0))
    b = _cls_batch(0)
    with pytest.raises(FewshotError, match="query_x"):
        learner.meta_loss(TaskBatch(b.support_x, b.support_y, b.query_x[..., :4, :4], b.query_y, 3))
    with pytest.raises(FewshotError, match="support_y"):
        learner.meta_loss(TaskBatch(b.support_x, b.support_y[:, :-1], b.query_x, b.query_y, 3))
    with pytest.raises(FewshotError, match=r"0\.\.2"):
        learner.meta_loss(TaskBatch(b.support_x, b.support_y + 1, b.query_x, b.query_y, 3))
    with pytest.raises(FewshotError, match="outputs 5 scores per example but the tasks are 3-way"):
        MAML(Conv4(1, 5, hidden=4, image_size=8, blocks=2).double()).meta_loss(b)
    narrow = MAML(Conv4(1, 2, hidden=4, image_size=8, blocks=2).double())
    with pytest.raises(FewshotError, match="outputs 2 scores per example but the tasks are 3-way"):
        narrow.meta_loss(b)
    with pytest.raises(FewshotError, match="labels go up to 2 but the model outputs 2 scores"):
        narrow.adapt(b.support_x[0], b.support_y[0])
    # a task with fewer classes than the head is fine for adapt
    wide = MAML(Conv4(1, 5, hidden=4, image_size=8, blocks=2).double())
    every = {n for n, _ in wide.model.named_parameters()}
    assert set(wide.adapt(b.support_x[0], b.support_y[0]).params) == every
    with pytest.raises(FewshotError, match="regression"):
        learner.meta_loss(TaskBatch(b.support_x, b.support_y, b.query_x, b.query_y, None))


def test_output_widths_are_measured_once_per_kind_of_input_without_touching_the_model():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    forwards = []
    model.register_forward_hook(lambda m, i, o: forwards.append(i[0].shape))
    widths = OutputWidths()
    x = torch.randn(5, 2, 2, dtype=torch.float64)
    widths.check(model, x, 3)
    widths.check_at_least(model, x[:2], 2)  # same kind of example: no new forward
    assert forwards == [(1, 2, 2)]
    with pytest.raises(FewshotError, match="outputs 3 scores per example but the tasks are 5-way"):
        widths.check(model, x, 5)
    with pytest.raises(FewshotError,
                       match=r"labels go up to 3 but the model outputs 3 scores.*0\.\.2"):
        widths.check_at_least(model, x, 4)
    assert widths.width(model, x.float().double().reshape(5, 4, 1)) == 3 and len(forwards) == 2
    widths.check(model, x, None)  # regression: nothing to check
    assert len(forwards) == 2 and not any(p.grad is not None for p in model.parameters())


def test_raise_if_nonfinite_and_warn_if_rising():
    raise_if_nonfinite(torch.tensor([[1.0, 0.5, 0.2]]), 2)
    with pytest.raises(AdaptationError, match="not finite at inner step 1 of 2"):
        raise_if_nonfinite(torch.tensor([[1.0, float("nan"), 0.2]]), 2)
    warned: set[int] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # mean 1.075: within 1.1x
        warn_if_rising(warned, torch.tensor([[1.0, 1.3], [1.0, 0.85]]), 1, 1)
    with pytest.warns(AdaptationWarning,
                      match="from 1 before the first inner step to 1.2 after step 1"):
        warn_if_rising(warned, torch.tensor([[1.0, 1.4], [1.0, 1.0]]), 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_rising(warned, torch.tensor([[1.0, 9.0]]), 1, 1)  # once per step count
    assert warned == {1}

"""Evaluation statistics: mean and 95% CI by hand computation."""
from __future__ import annotations

import math

import pytest
import torch

from fewshot.errors import FewshotError
from fewshot.scoring import evaluate_learner, summarize


def test_summary_by_hand():
    values = [0.2, 0.4, 0.4, 1.0]
    mean = sum(values) / 4  # 0.5
    sample_var = sum((v - mean) ** 2 for v in values) / 3  # (0.09+0.01+0.01+0.25)/3 = 0.12
    s = summarize(values)
    assert s.mean == pytest.approx(0.5)
    assert s.std == pytest.approx(math.sqrt(0.12))
    assert s.ci95 == pytest.approx(1.96 * math.sqrt(sample_var) / 2)
    assert s.n == 4


def test_summary_edge_cases():
    assert summarize([0.7]).ci95 == 0.0
    with pytest.raises(FewshotError, match="zero episodes"):
        summarize([])
    with pytest.raises(FewshotError, match="non-finite"):
        summarize([1.0, float("nan")])


class _Constant(torch.nn.Module):
    """A learner whose per-task accuracy is the mean of the query labels (known by hand)."""

    def evaluate(self, batch, *, steps=None):
        return {"accuracy": batch.query_y.float().mean(dim=1) * (steps or 1)}


def test_evaluate_learner_collects_all_tasks():
    from episodes.types import TaskBatch

    y = torch.tensor([[0, 1], [1, 1], [0, 0]])
    batches = [TaskBatch(torch.zeros(3, 2, 1), y, torch.zeros(3, 2, 1), y, ways=2)] * 2
    name, s = evaluate_learner(_Constant(), batches, steps=2)
    assert name == "accuracy"
    assert s.n == 6
    assert s.mean == pytest.approx(2 * (0.5 + 1.0 + 0.0) / 3)


def test_evaluate_learner_progress_bar_is_off_by_default_and_counts_episodes_on_stderr(capsys):
    from episodes.types import TaskBatch

    y = torch.tensor([[0, 1], [1, 1], [0, 0]])
    batches = [TaskBatch(torch.zeros(3, 2, 1), y, torch.zeros(3, 2, 1), y, ways=2)] * 2
    quiet = evaluate_learner(_Constant(), batches)
    assert capsys.readouterr() == ("", "")  # a library call prints nothing
    shown = evaluate_learner(_Constant(), batches, progress=True, total=6)
    out, err = capsys.readouterr()
    assert shown == quiet and out == ""
    assert "evaluating" in err and "0/6" in err and "episode" in err

"""``BestSoFar.offer`` / ``choose_best``: the lowest finite support loss wins, ties keep the earlier
step, the last step is kept unless its loss is above the lowest or not finite, all per task
(tensors)."""
from __future__ import annotations

import math

import pytest
import torch

from fewshot.best_step import BestSoFar, choose_best


def _best(losses: list[float]) -> BestSoFar:
    """Offer steps 0..n-1 with parameter value t and the given losses, as the inner loop does."""
    best = BestSoFar({"w": torch.tensor(0.0)}, torch.tensor(losses[0]), torch.tensor(0))
    for t, loss in enumerate(losses[1:], 1):
        best = best.offer({"w": torch.tensor(float(t))}, torch.tensor(loss), t)
    return best


@pytest.mark.parametrize("losses, last, step", [
    ([3.0, 2.0, 1.0], 0.5, 3),            # falling: the last step
    ([3.0, 2.0, 1.0], 1.0, 3),            # a tie with the lowest keeps the last
    ([3.0, 1.0, 2.0], 2.5, 1),            # rose: the lowest earlier step
    ([3.0, 1.0, 1.0], 4.0, 1),            # ties among earlier steps keep the earlier one
    ([math.nan, 2.0, 1.0], 5.0, 2),       # a non-finite loss is never the best, even at step 0
    # a non-finite last step is never kept when an earlier one is finite
    ([3.0, math.inf, 1.0], math.nan, 2),
    ([math.nan, math.nan], math.nan, 2),  # nothing finite: the last step (the caller raises)
])
def test_the_step_chosen(losses, last, step):
    chosen = choose_best(_best(losses), {"w": torch.tensor(99.0)}, torch.tensor(last), len(losses))
    assert int(chosen.step) == step
    assert float(chosen.params["w"]) == (99.0 if step == len(losses) else float(step))


def test_the_choice_is_per_task_under_vmap():
    losses = torch.tensor([[3.0, 1.0], [3.0, 2.0]])  # 2 tasks, 2 steps offered
    last = torch.tensor([2.0, 1.0])

    def one(ls, final):
        best = BestSoFar({"w": torch.zeros(())}, ls[0], torch.zeros((), dtype=torch.long))
        best = best.offer({"w": torch.ones(())}, ls[1], 1)
        chosen = choose_best(best, {"w": torch.full((), 2.0)}, final, 2)
        return chosen.step, chosen.params["w"]

    steps, w = torch.func.vmap(one)(losses, last)
    assert steps.tolist() == [1, 2] and w.tolist() == [1.0, 2.0]

"""Adaptation warns once (AdaptationWarning) when it makes the support loss worse, and stays quiet
otherwise."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from fewshot.errors import AdaptationWarning, FewshotWarning
from fewshot.learners import MAML, MAMLConfig
from fewshot.learners.checks import RISE_FACTOR
from fewshot.nn import StepBatchNorm1d, norm_training
from tests.fewshot.learners.tasks import cls_batch


def _learner(lr: float, batching: str = "loop") -> MAML:
    torch.manual_seed(0)  # test-only module init
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    return MAML(model, MAMLConfig(inner_steps=1, inner_lr=lr, task_batching=batching)).eval()


def _support_losses(learner: MAML, batch, steps: int) -> tuple[float, float]:
    """Oracle: mean support loss before adapting and after ``steps`` updates, computed by hand per
    task."""
    first, last = [], []
    for i in range(len(batch)):
        with torch.no_grad():
            first.append(
                float(
                    nn.functional.cross_entropy(learner.model(batch.support_x[i]),
                                                batch.support_y[i])))
        sx, sy = batch.support_x[i], batch.support_y[i]
        # the last step's, diverged or not
        params = learner.adapt(sx, sy, steps=steps, best_step=False).params
        out = torch.func.functional_call(learner.model, params, (sx,))
        last.append(float(nn.functional.cross_entropy(out, sy).detach()))
    return sum(first) / len(first), sum(last) / len(last)


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_a_huge_inner_lr_warns_once_and_a_normal_one_never(batching):
    batch = cls_batch(0, b=4)
    bad, good = _learner(500.0, batching), _learner(0.1, batching)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        good_first, good_last = _support_losses(good, batch, 3)
        good.evaluate(batch, steps=3)
    assert good_last < good_first and not caught  # the loss fell: nothing to say
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):  # three meta-batches of an evaluation, then a user's own adapt calls
            bad.evaluate(batch, steps=3)
        bad_first, bad_last = _support_losses(bad, batch, 3)
    assert bad_last > RISE_FACTOR * bad_first  # the oracle agrees that it diverged
    assert len(caught) == 1 and caught[0].category is AdaptationWarning
    assert issubclass(AdaptationWarning, FewshotWarning)
    message = str(caught[0].message)
    said = f"from {bad_first:.3g} before the first inner step to {bad_last:.3g} after step 3"
    assert "\n" not in message and said in message and "this learner trained with 1" in message


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_support_mode_reads_the_final_support_loss_off_the_query_forward(batching):
    # support mode runs [support; queries] in one forward, whose support rows are the support set's
    # own
    # forward at that step: the warning's final loss comes from there and equals a separate forward
    torch.manual_seed(0)  # test-only module init
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), StepBatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, 3)).double()
    learner = MAML(model, MAMLConfig(inner_steps=1, inner_lr=500.0, bn_mode="support",
                                     task_batching=batching)).eval()
    batch = cls_batch(2, b=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learner.evaluate(batch, steps=2)
    first, last = [], []
    for i in range(len(batch)):  # oracle: the support set alone, with its own batch statistics
        sx, sy = batch.support_x[i], batch.support_y[i]
        with torch.no_grad(), norm_training(learner.model, True):
            first.append(float(nn.functional.cross_entropy(learner.model(sx), sy)))
            params = learner.adapt(sx, sy, steps=2, best_step=False).params  # the last step's
            buffers = {k: v.clone() for k, v in learner.model.named_buffers()}
            out = torch.func.functional_call(learner.model, {**params, **buffers}, (sx,))
        last.append(float(nn.functional.cross_entropy(out, sy)))
    mean_first, mean_last = sum(first) / len(first), sum(last) / len(last)
    assert mean_last > RISE_FACTOR * mean_first and len(caught) == 1
    message = str(caught[0].message)
    assert (
        f"from {mean_first:.3g} before the first inner step to {mean_last:.3g} after step "
        "2" in message)


def test_adapt_warns_on_its_own_and_again_for_another_step_count():
    learner = _learner(500.0)
    task = cls_batch(1, b=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learner.adapt(task.support_x[0], task.support_y[0], steps=2)
        learner.adapt(task.support_x[0], task.support_y[0], steps=2)
        learner.adapt(task.support_x[0], task.support_y[0], steps=4)
    assert [str(w.message).split("after step ")[1][:2] for w in caught] == ["2 ", "4 "]
    assert "(mean over 1 tasks)" in str(caught[0].message)


def test_training_is_not_slowed_or_warned():
    learner = _learner(500.0).train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learner.meta_loss(cls_batch(0, b=2))
    assert not caught


def test_cli_prints_one_warning_line(capsys):
    from fewshot.cli import _show_warning

    show = _show_warning(lambda *a,
                         **k: pytest.fail("a fewshot warning fell through to Python's printer"))
    show(AdaptationWarning("the support loss rose"), AdaptationWarning, "f.py", 1)
    assert capsys.readouterr().err == "warning: the support loss rose\n"
    # any other warning goes to Python's printer, with its arguments as they were
    passed = []
    other = UserWarning("not ours")
    _show_warning(lambda *a, **k: passed.append((a, k)))(other, UserWarning, "g.py", 7,
                                                         line="x = 1")
    assert passed == [((other, UserWarning, "g.py", 7), {"line": "x = 1"})]
    assert capsys.readouterr().err == ""

"""Test-time inner steps chosen on the validation set (what a published model's manifest records).

Why: a model meta-trained with ``inner_steps`` updates may be better or worse with more at test time
(the update it learned can overshoot when repeated), and the config's ``eval_steps`` is a guess made
before training. Choosing on the validation episodes, never the test ones, keeps the test number
honest.

Range: 1 .. ``max(MAX_STEPS, inner_steps, eval_steps)``. 10 is the largest test-time step count of
the MAML papers' protocols (sinusoid regression), so the usual choices (1, 3, 5, 10) are all tried,
and the trained and configured counts are always included. Rule: the best mean validation metric
(highest accuracy, lowest MSE); ties go to fewer steps (cheaper, and closer to what was trained).

Usage: ``steps, by_steps = choose_test_steps(learner, cfg)`` -> ``3, {1: 0.93, 2: 0.95, ...}``.
"""
from __future__ import annotations

import torch

from ..config import TrainConfig
from ..scoring import evaluate_learner
from ..training.build import build_fixed_set

MAX_STEPS = 10


def step_range(cfg: TrainConfig) -> range:
    """The step counts tried: 1 .. max(MAX_STEPS, inner_steps, eval_steps)."""
    lc = cfg.learner.config
    return range(1, max(MAX_STEPS, lc.inner_steps, lc.eval_steps or 0) + 1)


def choose_test_steps(learner: torch.nn.Module, cfg: TrainConfig, *, episodes: int | None = None,
                      device: torch.device | str | None = None) -> tuple[int, dict[int, float]]:
    """``(chosen steps, {steps: mean validation metric})`` over the config's fixed validation
    episodes (``cfg.val_episodes`` unless ``episodes``; the same episodes for every step count)."""
    fixed = build_fixed_set(cfg, "val", count=episodes or cfg.val_episodes, device=device)
    by_steps: dict[int, float] = {}
    metric = "accuracy"
    for steps in step_range(cfg):
        metric, summary = evaluate_learner(learner, fixed.batches(cfg.eval_batch), steps=steps)
        by_steps[steps] = summary.mean
    sign = -1.0 if metric == "mse" else 1.0
    best = max(by_steps, key=lambda s: (sign * by_steps[s], -s))
    return best, by_steps

"""Evaluate a learner on its config's fixed test episodes: the numbers ``fewshot eval`` prints.

Usage::

    report = evaluate_config(learner, cfg, episodes=600, split="test")
    report["mean"], report["ci95"]            # accuracy (classification) or MSE (regression)
"""
from __future__ import annotations

from typing import Any

import torch

from ..evaluation import evaluate_learner
from .build import TEST_SEED, build_fixed_set
from .config import TrainConfig


def evaluate_config(learner: torch.nn.Module, cfg: TrainConfig, *, episodes: int | None = None,
                    split: str | None = None, steps: int | None = None, seed: int = TEST_SEED,
                    device: torch.device | str | None = None, batch_size: int | None = None) -> dict[str, Any]:
    """Mean and 95% CI of the per-episode metric over a fixed seeded episode set (deterministic).

    Returns a JSON-ready dict: metric, mean, ci95, std, episodes, ways, shots, queries, dataset,
    split, steps, seed.
    """
    episodes = episodes or cfg.eval_episodes
    fixed = build_fixed_set(cfg, "test", count=episodes, split=split, seed=seed, device=device)
    metric, summary = evaluate_learner(learner, fixed.batches(batch_size or cfg.eval_batch), steps=steps)
    lc = cfg.learner.config
    used_steps = steps if steps is not None else (getattr(lc, "eval_steps", None) or getattr(lc, "inner_steps", None))
    return {
        "metric": metric,
        "mean": summary.mean,
        "ci95": summary.ci95,
        "std": summary.std,
        "episodes": summary.n,
        "ways": fixed.ways,
        "shots": fixed.shots,
        "queries": fixed.queries,
        "dataset": cfg.data.dataset,
        "split": fixed.split,
        "steps": used_steps,
        "seed": seed,
    }

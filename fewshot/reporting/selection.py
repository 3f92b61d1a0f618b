"""Which checkpoint of a run to publish: its last state, unless a validated one is better beyond
noise.

Why: the checkpoint with the best validation score is the maximum of many noisy measurements, so on
a small validation set it is chosen for its luck, not its quality (on 200 episodes a 95% interval is
about ±1.3 points at 95% accuracy, larger than the late gains of a run). With the learning rate
annealed, the last state is the run's estimate of its best weights. So both are scored on the same
fixed validation episodes (at least ``MIN_EPISODES``) and the best checkpoint is published only if
it beats the last state by more than the 95% interval of their paired per-episode difference.

Usage: ``selection = choose_checkpoint(last_learner, best_learner, cfg, last_iteration=60000,
best_iteration=52000)`` -> ``selection.chosen`` is ``"last"`` or ``"best"``; ``selection.to_dict()``
is what the manifest records.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..config import TrainConfig
from ..scoring import episode_values, summarize
from ..training.build import VAL_SEED, build_fixed_set

MIN_EPISODES = 1000


@dataclass
class Selection:
    """The choice and its evidence: both checkpoints' validation means, the paired difference
    ``best - last`` (positive: best is better; for MSE the sign is turned so that this holds too)
    and its 95% interval, over ``episodes`` validation episodes of seed ``val_seed``."""

    chosen: str  # "last" or "best"
    last_iteration: int
    best_iteration: int
    episodes: int
    val_seed: int
    metric: str
    last_mean: float
    best_mean: float
    difference: float
    difference_ci95: float
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def choose_checkpoint(last: torch.nn.Module, best: torch.nn.Module, cfg: TrainConfig, *,
                      last_iteration: int,
                      best_iteration: int, episodes: int | None = None,
                      device: torch.device | str | None = None) -> Selection:
    """Score ``last`` and ``best`` (learners holding the two checkpoints) on the same fixed
    validation episodes (``max(cfg.val_episodes, MIN_EPISODES)`` unless ``episodes``) and choose
    (module docstring)."""
    count = episodes or max(cfg.val_episodes, MIN_EPISODES)
    fixed = build_fixed_set(cfg, "val", count=count, device=device)
    metric = "mse" if cfg.data.is_regression else "accuracy"
    _, last_values = episode_values(last, fixed.batches(cfg.eval_batch), metric=metric)
    if best_iteration == last_iteration:
        mean = float(last_values.mean())
        return Selection("last", last_iteration, best_iteration, count, VAL_SEED, metric, mean,
                         mean, 0.0, 0.0,
                         "the best validated checkpoint is the last state")
    _, best_values = episode_values(best, fixed.batches(cfg.eval_batch), metric=metric)
    sign = -1.0 if metric == "mse" else 1.0
    gain = summarize(sign * (best_values - last_values))
    beats = gain.mean > gain.ci95
    what = f"{metric} {'+' if gain.mean >= 0 else '-'}{abs(gain.mean):.4f} ± {gain.ci95:.4f}"
    reason = (
        f"the checkpoint of iteration {best_iteration} beats the last state ({last_iteration}) by "
        "more than "
        f"the 95% interval of the paired difference on {count} validation episodes ({what})"
              if beats else
        f"the checkpoint of iteration {best_iteration} does not beat the last state "
        f"({last_iteration}) by more "
        f"than the 95% interval of the paired difference on {count} validation episodes "
        f"({what})")
    return Selection("best" if beats else "last", last_iteration, best_iteration, count, VAL_SEED,
                     metric,
                     float(last_values.mean()), float(best_values.mean()), gain.mean, gain.ci95,
                     reason)

"""Validation during training: the score over the fixed validation episodes and the tasks whose
adaptation diverged (reported, never fatal)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from ..config import TrainConfig
from ..learners import GradientLearner
from ..runtime import distributed
from ..runtime.distributed import Ranks
from ..scoring import Summary, summarize


@dataclass
class Divergence:
    """Validation tasks whose adaptation diverged: the support loss ended above its lowest value
    (their predictions then came from the best support-loss step, ``LearnerConfig.best_step``) or
    became non-finite.  Episode indices are those of the fixed validation set."""

    steps: int  # the updates validation asked for
    episodes: list[int]  # diverged episodes, in order
    steps_used: list[int]  # the step each of them predicted with
    nonfinite: list[int]  # episodes with a non-finite support loss
    first_nonfinite_step: int | None

    def metrics(self) -> dict[str, Any]:
        """What the ``val`` metrics line records (at most 20 episode numbers)."""
        out: dict[str, Any] = {"diverged_tasks": len(self.episodes),
                               "nonfinite_tasks": len(self.nonfinite)}
        if self.episodes:
            out["diverged_episodes"] = self.episodes[:20]
            out["diverged_steps_used"] = self.steps_used[:20]
        if self.first_nonfinite_step is not None:
            out["first_nonfinite_step"] = self.first_nonfinite_step
        return out

    def message(self, iteration: int, total: int) -> str:
        shown = ", ".join(f"{e} (step {s})" for e, s in zip(self.episodes[:5], self.steps_used[:5]))
        more = f" and {len(self.episodes) - 5} more" if len(self.episodes) > 5 else ""
        nonfinite = (
            f" ({len(self.nonfinite)} became non-finite, first at inner step "
            f"{self.first_nonfinite_step})"
                     if self.nonfinite else "")
        return (
            f"validation at iteration {iteration}: on {len(self.episodes)} of {total} tasks the "
            "support loss "
            f"ended above its lowest value over {self.steps} steps{nonfinite}; they predicted "
            "with their "
            f"lowest-support-loss step: episodes {shown}{more}. Training goes on; fewer eval "
            "steps "
            "(learner.eval_steps) or a lower inner learning rate avoid it")


def validate(learner: GradientLearner, val_set: Any, cfg: TrainConfig, metric: str, ranks: Ranks, *,
             progress: bool = False) -> tuple[Summary, Divergence | None]:
    """``(summary of metric, Divergence or None)`` over the validation episodes; under torchrun each
    rank evaluates its share of the episodes and the per-episode values are gathered, so the numbers
    equal one process's.  A diverging task never stops training: it is reported."""
    start, stop = ranks.share(val_set.count)
    batches = val_set.batches(cfg.eval_batch, start, stop)
    total = -(-(stop - start) // cfg.eval_batch)
    was_training = learner.training
    learner.eval()
    values, used, nonfinite = [], [], []
    try:
        # a nested bar moves the cursor (ESC [A): only on a terminal, never into a redirected log
        for batch in tqdm(batches, total=total, disable=not progress or not sys.stderr.isatty(),
                          leave=False,
                          unit="batch", desc="validation", dynamic_ncols=True):
            out = learner.evaluate(batch)
            values.append(out[metric].detach().double().cpu().flatten())
            used.append(out["step"].detach().double().cpu().flatten())
            nonfinite.append(out["nonfinite_at"].detach().double().cpu().flatten())
    finally:
        learner.train(was_training)
    empty = torch.zeros(0, dtype=torch.float64)
    mine, steps_used, bad_at = (torch.cat(v) if v else empty for v in (values, used, nonfinite))
    steps_used, bad_at = distributed.gather(steps_used, ranks), distributed.gather(bad_at, ranks)
    mine = distributed.gather(mine, ranks)
    # else a diverged task scored mse inf (best_step off): so does the mean
    finite = bool(mine.isfinite().all())
    summary = summarize(mine) if finite else Summary(float("inf"), float("inf"), mine.numel(),
                                                     float("inf"))
    steps = learner.default_eval_steps
    diverged = ((steps_used != steps) | (bad_at >= 0)).nonzero().flatten().tolist()
    if not diverged:
        return summary, None
    bad = (bad_at >= 0).nonzero().flatten().tolist()
    return summary, Divergence(steps, diverged, [int(steps_used[i]) for i in diverged], bad,
                               int(bad_at[bad].min()) if bad else None)

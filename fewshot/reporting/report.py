"""The test report of a learner under its config: mean ± 95% CI over the config's fixed, seeded test
episodes. The numbers ``fewshot eval`` prints and ``fewshot pretrained publish`` records."""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

import torch

from ..config import TrainConfig
from ..runtime import distributed
from ..scoring import Summary, episode_values, summarize
from ..training.build import TEST_SEED, build_fixed_set


@contextlib.contextmanager
def bn_mode_of(learner: Any, bn_mode: str | None) -> Iterator[str | None]:
    """Evaluate ``learner`` with ``bn_mode`` inside the block (None: its own); yields the mode in
    use.

    Why: the same weights can be scored with batch statistics (transductive, the papers' protocol)
    and with stored statistics (one query at a time); the config is restored afterwards."""
    config = getattr(learner, "config", None)
    own = getattr(config, "bn_mode", None)
    if bn_mode is None or config is None or own is None:
        yield own
        return
    learner.config = dataclasses.replace(config, bn_mode=bn_mode)
    try:
        yield bn_mode
    finally:
        learner.config = config


def report_on_fixed_episodes(learner: torch.nn.Module, cfg: TrainConfig, *,
                             episodes: int | None = None,
                    split: str | None = None, steps: int | None = None, seed: int = TEST_SEED,
                    device: torch.device | str | None = None, batch_size: int | None = None,
                    progress: bool = False, bn_mode: str | None = None) -> dict[str, Any]:
    """Mean and 95% CI of the per-episode metric over a fixed seeded episode set (deterministic).

    ``progress=True``: a tqdm bar of the episodes on stderr (``fewshot eval`` shows it unless
    ``--quiet``). ``bn_mode`` evaluates with another batch-norm mode than the learner's
    (docs/batchnorm.md). Returns a JSON-ready dict: metric, mean, ci95, std, episodes, ways, shots,
    queries, dataset, split, steps, seed, bn_mode (None for learners without one).  Under torchrun
    the episodes are split over the processes and their values gathered (the same numbers as one
    process; every rank returns the report).
    """
    episodes = episodes or cfg.eval_episodes
    here = torch.device(device) if device is not None else next(learner.parameters()).device
    ranks, here = distributed.setup(here)
    try:
        if ranks.active:
            learner.to(here)
            device = here
        fixed = build_fixed_set(cfg, "test", count=episodes, split=split, seed=seed, device=device)
        start, stop = ranks.share(fixed.count)
        with bn_mode_of(learner, bn_mode) as used_mode:
            metric, mine = episode_values(learner,
                                          fixed.batches(batch_size or cfg.eval_batch, start, stop),
                                          steps=steps,
                                          metric="mse" if cfg.data.is_regression else "accuracy",
                                          progress=progress and ranks.main, total=stop - start)
        summary = summarize(distributed.gather(mine, ranks))
        # as in training: nobody leaves the group while another rank is still in it
        distributed.barrier(ranks)
    finally:
        distributed.teardown(ranks)
    return {
        **summary_fields(metric, summary),
        "ways": fixed.ways,
        "shots": fixed.shots,
        "queries": fixed.queries,
        "dataset": cfg.data.dataset,
        "split": fixed.split,
        "steps": steps_used(cfg, steps),
        "seed": seed,
        "bn_mode": used_mode,
    }


def summary_fields(metric: str, summary: Summary) -> dict[str, Any]:
    """The report entries every evaluation shares: metric name, mean, ci95, std, episodes."""
    return {"metric": metric, "mean": summary.mean, "ci95": summary.ci95, "std": summary.std,
            "episodes": summary.n}


def steps_used(cfg: TrainConfig, steps: int | None) -> int | None:
    """The adaptation steps an evaluation with ``steps`` (None: the learner's default) runs."""
    lc = cfg.learner.config
    return steps if steps is not None else (getattr(lc, "eval_steps", None)
                                            or getattr(lc, "inner_steps", None))

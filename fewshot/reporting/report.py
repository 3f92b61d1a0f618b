"""The test report of a learner under its config: mean ± 95% CI over the config's fixed, seeded test
episodes. The numbers ``fewshot eval`` prints and ``fewshot pretrained publish`` records."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..config import TrainConfig
from ..errors import ConfigError
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


@dataclass(frozen=True)
class EpisodeProtocol:
    """What a report measures besides the learner: ``episodes`` fixed episodes (None: the config's
    ``eval_episodes``) drawn with ``seed``, of ``ways``/``shots``/``queries`` (None: the config's;
    only a folder of your own images can be drawn in another shape), adapted with ``steps`` (None:
    the learner's) in batch-norm mode ``bn_mode`` (None: the learner's; docs/batchnorm.md)."""

    episodes: int | None = None
    seed: int = TEST_SEED
    steps: int | None = None
    bn_mode: str | None = None
    ways: int | None = None
    shots: int | None = None
    queries: int | None = None


@dataclass(frozen=True)
class Execution:
    """Where and how a report's episodes run, which never changes its numbers: on ``device`` (None:
    the learner's), ``batch_size`` episodes at a time (None: the config's ``eval_batch``), with a
    tqdm ``progress`` bar on stderr."""

    device: torch.device | str | None = None
    batch_size: int | None = None
    progress: bool = False


def report_on_fixed_episodes(learner: torch.nn.Module, cfg: TrainConfig,
                             protocol: EpisodeProtocol = EpisodeProtocol(), *,
                             split: str | None = None, run: Execution = Execution()
                             ) -> dict[str, Any]:
    """Mean and 95% CI of the per-episode metric over the config's fixed seeded test episodes
    (deterministic), or those of ``split``, under ``protocol``.

    Returns a JSON-ready dict: metric, mean, ci95, std, episodes, ways, shots, queries, dataset,
    split, steps, seed, bn_mode (None for learners without one).  Under torchrun the episodes are
    split over the processes and their values gathered (the same numbers as one process; every
    rank returns the report).
    """
    shape = {k: getattr(protocol, k) for k in ("ways", "shots", "queries")}
    if any(v is not None for v in shape.values()):
        raise ConfigError("the test episodes have the config's ways, shots and queries: draw "
                          "another shape from a folder of your own (report_on_folder), or change "
                          "the config")
    episodes, seed, steps = protocol.episodes, protocol.seed, protocol.steps
    device = run.device
    episodes = episodes or cfg.eval_episodes
    here = torch.device(device) if device is not None else next(learner.parameters()).device
    ranks, here = distributed.setup(here)
    try:
        if ranks.active:
            learner.to(here)
            device = here
        fixed = build_fixed_set(cfg, "test", count=episodes, split=split, seed=seed, device=device)
        start, stop = ranks.share(fixed.count)
        with bn_mode_of(learner, protocol.bn_mode) as used_mode:
            metric, mine = episode_values(learner,
                                          fixed.batches(run.batch_size or cfg.eval_batch, start,
                                                        stop),
                                          steps=steps,
                                          metric="mse" if cfg.data.is_regression else "accuracy",
                                          progress=run.progress and ranks.main,
                                          total=stop - start)
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

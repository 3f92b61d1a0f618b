"""Score any meta-initialization on your own image folder: fixed seeded episodes, mean ± 95% CI.

Why its own report: a user's folder has its own classes, and often another number of ways than the
model's head; the images must be prepared the way the model's training images were (its
``episodes.Preprocessing``), or accuracy falls to near chance without any error.

Usage: ``report_on_folder(learner, cfg, "my_chars/", EpisodeProtocol(ways=5, shots=1, queries=5,
episodes=100))``
(what ``fewshot eval MODEL --data DIR`` prints).
"""
from __future__ import annotations

import os
from typing import Any

import torch

from episodes import FixedEpisodes, Preprocessing, dataset_preprocessing
from episodes.polarity import polarity_line
from episodes.preprocessing import read_image_folder

from ..config import TrainConfig
from ..errors import ConfigError
from ..scoring import evaluate_learner
from ..training.ways import with_ways
from .report import EpisodeProtocol, Execution, bn_mode_of, steps_used, summary_fields


def model_preprocessing(learner: torch.nn.Module, cfg: TrainConfig) -> Preprocessing:
    """The learner's own ``preprocessing`` (pretrained models carry it), else its dataset
    store's."""
    prep = getattr(learner, "preprocessing", None)
    if isinstance(prep, Preprocessing):
        return prep
    if cfg.data.is_regression:
        raise ConfigError(
            f"the model was trained on {cfg.data.dataset} (regression), not on images: "
            "evaluate it without --data")
    return dataset_preprocessing(cfg.data.dataset, cfg.data.size)


def report_on_folder(learner: torch.nn.Module, cfg: TrainConfig, folder: str | os.PathLike,
                     protocol: EpisodeProtocol = EpisodeProtocol(), *,
                     preprocessing: Preprocessing | None = None, invert: bool | None = None,
                     run: Execution = Execution()) -> dict[str, Any]:
    """Mean and 95% CI of query accuracy over fixed episodes drawn from ``folder`` under
    ``protocol``.

    ``folder`` holds one subfolder of images per class, read with ``preprocessing`` (default: the
    model's). The protocol's ``ways``/``shots``/``queries``/``episodes`` default to the config's; a
    ``ways`` other than the head's gets a zero head (``fewshot.training.ways.with_ways``). Episode
    ``i`` depends only on (folder, ways, shots, queries, seed, i). Grayscale folders are turned the
    way round the model expects (strokes bright) from their borders unless ``invert`` forces it
    (``episodes.polarity``); the report's ``polarity`` says what was detected and done,
    ``polarity_line`` in one line. Returns a JSON-ready dict like ``report_on_fixed_episodes``.
    """
    seed, steps, device = protocol.seed, protocol.steps, run.device
    split = read_image_folder(folder, preprocessing or model_preprocessing(learner, cfg),
                              invert=invert, log=False)
    # with the invert the polarity check decided
    prep = Preprocessing.from_dict(split.meta["preprocessing"])
    ways = cfg.data.ways if protocol.ways is None else protocol.ways
    shots = cfg.data.shots if protocol.shots is None else protocol.shots
    queries = cfg.data.test_queries if protocol.queries is None else protocol.queries
    episodes = cfg.eval_episodes if protocol.episodes is None else protocol.episodes
    if ways != cfg.data.ways:
        learner, cfg = with_ways(learner, cfg, ways)
    fixed = FixedEpisodes(split, ways, shots, queries, count=episodes, seed=seed)
    batches = (b.to(device) if device is not None else b
               for b in fixed.batches(run.batch_size or cfg.eval_batch))
    with bn_mode_of(learner, protocol.bn_mode) as used_mode:
        metric, summary = evaluate_learner(learner, batches, steps=steps)
    return {
        **summary_fields(metric, summary),
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "data": str(folder),
        "classes": split.num_classes,
        "images": int(split.data.shape[0]),
        "preprocessing": prep.to_dict(),
        "polarity": split.meta["polarity"],
        "polarity_line": polarity_line(split.meta["polarity"]),
        "steps": steps_used(cfg, steps),
        "seed": seed,
        "bn_mode": used_mode,
    }

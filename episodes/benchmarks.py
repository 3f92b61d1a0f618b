"""One call from a benchmark's name to its train / validation / test task sources, with the standard
protocol.

Usage::

    tasks = benchmark_tasks("omniglot", ways=5, shots=1)  # or get_tasksets(...), learn2learn's name
    batch = tasks.train.sample(32)  # EpisodeSampler over the train classes
    for batch in tasks.test.batches(50): ...                        # the 600 fixed test episodes

Why: a benchmark number means something only with its standard splits and test protocol; writing
them by hand (which split, which rotations, how many episodes and queries, which seeds) is where
results stop being comparable. The protocol here:

- Omniglot: the Vinyals et al. (2016) character splits (1028 / 172 / 423 characters), each rotation
  by 0/90/180/270 degrees its own class (4112 / 688 / 1692 classes); 28x28 unless ``size``.
- mini-ImageNet: the Ravi & Larochelle (2017) splits (64 / 16 / 20 classes x 600 images), 84x84.
- Test: 600 fixed episodes (the MAML paper's count) with 15 queries per class unless ``queries``
  is given; validation: 200 fixed episodes likewise. Training queries (``queries=None``): the MAML
  reference protocol, ``shots`` per class on Omniglot and 15 on mini-ImageNet.
- Seeds: the training sampler uses ``seed``; the fixed sets use ``validation_seed`` (1) and
  ``test_seed`` (2), the seeds ``fewshot``'s training and ``fewshot eval`` use, so the test episodes
  are the same whatever the training seed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .checks import check_positive
from .errors import DataError
from .fixed import FixedEpisodes
from .registry import load_split
from .sampler import EpisodeSampler

# benchmark -> (train, validation, test) split names and the training queries per class (None =
# shots).
BENCHMARKS: dict[str, tuple[tuple[str, str, str], int | None]] = {
    "omniglot": (("train", "val", "test"), None),
    "mini-imagenet": (("train", "val", "test"), 15),
}
TEST_EPISODES = 600
VALIDATION_EPISODES = 200
EVAL_QUERIES = 15


@dataclass(frozen=True)
class BenchmarkTasks:
    """A benchmark's task sources: ``train`` samples fresh episodes; ``validation`` and ``test`` are
    fixed sets."""

    train: EpisodeSampler
    validation: FixedEpisodes
    test: FixedEpisodes

    def __repr__(self) -> str:
        t, v, s = self.train, self.validation, self.test
        return (
            f"BenchmarkTasks({t.split.name!r}, ways={t.ways}, shots={t.shots}, "
            f"train_queries={t.queries}, "
            f"validation={v.count}x{v.queries} queries, test={s.count}x{s.queries} queries)")


def benchmark_tasks(
    benchmark: str,
    ways: int,
    shots: int,
    queries: int | None = None,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    seed: int = 0,
    size: int | None = None,
    test_episodes: int = TEST_EPISODES,
    validation_episodes: int = VALIDATION_EPISODES,
    validation_seed: int = 1,
    test_seed: int = 2,
    device: str | torch.device | None = None,
) -> BenchmarkTasks:
    """Train / validation / test task sources of ``benchmark`` (``omniglot`` or ``mini-imagenet``),
    N-way K-shot.

    ``queries`` sets the queries per class of all three; ``None`` = the standard protocol (see the
    module docstring). ``root``/``download``/``size``/``device`` are :func:`episodes.load_split`'s.
    Usage: ``benchmark_tasks("mini-imagenet", ways=5, shots=5, root="/data").test.batches(50)``.
    """
    if benchmark not in BENCHMARKS:
        raise DataError(f"unknown benchmark '{benchmark}': choose one of {', '.join(BENCHMARKS)} "
                        "(for other data build an EpisodeSampler / FixedEpisodes over "
                        "episodes.load_split)")
    (train_split, val_split, test_split), train_queries = BENCHMARKS[benchmark]
    check_positive("ways", ways)
    check_positive("shots", shots)
    if queries is not None:
        check_positive("queries", queries)
    check_positive("test_episodes", test_episodes)
    check_positive("validation_episodes", validation_episodes)

    def split(name: str):
        return load_split(benchmark, name, root, size=size, device=device, download=download)

    train_q = queries if queries is not None else (train_queries if train_queries is not None
                                                   else shots)
    eval_q = queries if queries is not None else EVAL_QUERIES
    return BenchmarkTasks(
        train=EpisodeSampler(split(train_split), ways, shots, train_q, seed),
        validation=FixedEpisodes(split(val_split), ways, shots, eval_q, validation_episodes,
                                 validation_seed),
        test=FixedEpisodes(split(test_split), ways, shots, eval_q, test_episodes, test_seed),
    )


# learn2learn's name for the same idea (its arguments differ: ways/shots here, one setting for all
# three).
get_tasksets = benchmark_tasks

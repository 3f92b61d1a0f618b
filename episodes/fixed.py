"""Fixed evaluation episode sets: the same episodes for the same arguments, on any machine.

Usage::

    test = load_split("omniglot", "test")
    test_set = FixedEpisodes(test, ways=5, shots=1, queries=15, count=1000, seed=0)
    for batch in test_set.batches(50):      # 20 TaskBatches; the episodes do not depend on 50
        ...
    one = test_set[3]                       # a single Task

Episode ``i`` is drawn from its own CPU ``torch.Generator`` seeded from ``(seed, i)`` through
``numpy.random.SeedSequence`` (a documented, platform-independent hash), with the same algorithm as
:class:`episodes.sampler.EpisodeSampler`. So episode ``i`` is the same whatever the batch size,
the device or the process, and the first ``n`` episodes of a larger set equal a set of ``count=n``.
Indices are computed once at construction; images are gathered per batch.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from .errors import DataError
from .sampler import (
    check_episode_shape,
    check_positive,
    check_seed,
    draw_episodes,
    episode_images,
    gather_batch,
)
from .types import ClassSplit, Task, TaskBatch


def episode_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of episode ``index`` of a fixed set with ``seed`` (same on every
    machine)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    g = torch.Generator(device="cpu")
    g.manual_seed((int(state[0]) | (int(state[1]) << 32)) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def episode_indices(split: ClassSplit, ways: int, per_class: int, seed: int,
                    index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(classes [1, ways], rows [1, ways, per_class])`` of episode ``index`` of a fixed set with
    ``seed`` (``draw_episodes`` on its own generator; rows index ``episode_images(split)``), so any
    episode can be rebuilt alone, in any order, by any process or worker."""
    return draw_episodes(episode_generator(seed, index), split, 1, ways, per_class)


def episode_rows(split: ClassSplit, ways: int, per_class: int, seed: int,
                 index: int) -> torch.Tensor:
    """``[1, ways, per_class]`` rows of ``episode_images(split)`` of episode ``index`` (support then
    query per class)."""
    return episode_indices(split, ways, per_class, seed, index)[1]


class FixedEpisodes:
    """A fixed, reproducible list of ``count`` N-way K-shot Q-query episodes over ``split``."""

    def __init__(
        self,
        split: ClassSplit,
        ways: int,
        shots: int,
        queries: int,
        count: int,
        seed: int,
        device: str | torch.device | None = None,
    ) -> None:
        check_episode_shape(split, ways, shots, queries)
        check_positive("count", count)
        check_seed(seed)
        self.split = split if device is None else split.to(device)
        self.ways, self.shots, self.queries, self.count, self.seed = (ways, shots, queries, count,
                                                                      seed)
        per_class = shots + queries
        draws = [episode_indices(split, ways, per_class, seed, i) for i in range(count)]
        self.classes, self.rows = (torch.cat(parts) for parts in zip(*draws))
        self._images = episode_images(self.split)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Task:
        if not -self.count <= index < self.count:
            raise IndexError(f"episode {index} out of range for {self.count} episodes")
        return gather_batch(self._images, self.rows[index : index + 1 or None], self.shots).task(0)

    def batches(self, batch_size: int, start: int = 0,
                stop: int | None = None) -> Iterator[TaskBatch]:
        """Yield episodes ``start..stop-1`` (default: all) in order as TaskBatches of ``batch_size``
        (the last one may be smaller).  A range lets each of several processes evaluate its
        share."""
        check_positive("batch_size", batch_size)
        stop = self.count if stop is None else stop
        if not 0 <= start <= stop <= self.count:
            raise DataError(
                f"episode range {start}..{stop} is not within 0..{self.count}: pass 0 <= start <= "
                "stop "
                f"<= {self.count}")
        for first in range(start, stop, batch_size):
            yield gather_batch(self._images, self.rows[first : min(first + batch_size, stop)],
                               self.shots)

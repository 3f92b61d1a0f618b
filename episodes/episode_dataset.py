"""Episodes as a map-style ``torch.utils.data.Dataset``: DataLoader workers and per-image
augmentation.

Usage::

    data = EpisodeDataset(load_split("omniglot", "train"), ways=5, shots=1, queries=15,
                          episodes=10_000, seed=0,
                          transform=torchvision.transforms.v2.RandomHorizontalFlip())
    loader = DataLoader(data, batch_size=32, shuffle=False, num_workers=4, collate_fn=data.collate)
    for batch in loader: ...                     # TaskBatch: support_x [32, 5, 1, 28, 28]

Why: ``EpisodeSampler`` builds a whole meta-batch with a few tensor ops in the main process, which
is the fastest way when there is nothing per image to do. Augmentation is per image, and belongs in
worker processes. Item ``i`` is episode ``i`` of ``FixedEpisodes(split, ways, shots, queries,
episodes, seed)`` (same classes, same images, same order: the same per-episode generator seeded from
``(seed, i)``), so the episodes do not depend on the number of workers, the batch size or the order
the loader asks for them in.

The transform is called on each image (support and query) as a float32 ``[C, H, W]`` tensor in
[0, 1] (the sampler's scaling; torchvision-v2 transforms accept it) and must return a tensor, all of
one shape. Transforms draw from torch's default generator (and Python's ``random``), which no caller
seeds per item; so while item ``i``'s transform runs, both are seeded from ``(seed, i)`` (a stream
of their own, apart from the episode's draws) and restored afterwards. Augmentations are then as
reproducible as the episodes: the same with 0 or 8 workers, run after run. NumPy's global generator
is not touched: a transform that uses it is not reproducible.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .checks import check_positive
from .errors import DataError
from .fixed import episode_rows
from .sampler import check_episode_shape, check_seed, episode_images, gather_batch
from .types import ClassSplit, Task, TaskBatch

Transform = Callable[[torch.Tensor], torch.Tensor]


def _transform_seed(seed: int, index: int) -> int:
    """The seed of episode ``index``'s augmentations: a SeedSequence stream apart from its sampling
    generator's."""
    return int(
        np.random.SeedSequence([int(seed), int(index), 1]).generate_state(1,
                                                                          dtype=np.uint64)[0] >> 1)


class EpisodeDataset(Dataset):
    """``episodes`` N-way K-shot Q-query episodes over ``split``; item ``i`` is a ``Task`` (see the
    module doc)."""

    def __init__(
        self,
        split: ClassSplit,
        ways: int,
        shots: int,
        queries: int,
        episodes: int,
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        check_episode_shape(split, ways, shots, queries)
        check_positive("episodes", episodes)
        check_seed(seed)
        if transform is not None and not callable(transform):
            raise DataError(
                "transform must be a callable on one [C, H, W] image, got "
                f"{type(transform).__name__}: "
                "pass e.g. torchvision.transforms.v2.RandomHorizontalFlip()")
        self.split = split
        self.ways, self.shots, self.queries, self.episodes, self.seed = (ways, shots, queries,
                                                                         episodes, seed)
        self.transform = transform
        self._images = episode_images(split)

    def __len__(self) -> int:
        return self.episodes

    def __getitem__(self, index: int) -> Task:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"episode index must be an integer, got {type(index).__name__}")
        if not -self.episodes <= index < self.episodes:
            raise IndexError(f"episode {index} out of range for {self.episodes} episodes")
        index = int(index) % self.episodes
        rows = episode_rows(self.split, self.ways, self.shots + self.queries, self.seed, index)
        task = gather_batch(self._images, rows, self.shots).task(0)
        if self.transform is None:
            return task
        return self._augment(task, index)

    def _augment(self, task: Task, index: int) -> Task:
        seed = _transform_seed(self.seed, index)
        python_state = random.getstate()
        with torch.random.fork_rng(devices=[]):  # restores torch's default CPU generator afterwards
            torch.manual_seed(seed)
            random.seed(seed)
            try:
                support, query = (self._each(x) for x in (task.support_x, task.query_x))
            finally:
                random.setstate(python_state)
        return Task(support, task.support_y, query, task.query_y)

    def _each(self, images: torch.Tensor) -> torch.Tensor:
        assert self.transform is not None
        out = [self.transform(image) for image in images]
        if not all(isinstance(o, torch.Tensor) for o in out):
            raise DataError(
                "the transform must return a tensor for each image: end it with a tensor "
                "conversion, e.g. "
                "torchvision.transforms.v2.ToDtype(torch.float32)")
        shapes = {tuple(o.shape) for o in out}
        if len(shapes) != 1:
            raise DataError(
                f"the transform returned images of different shapes {sorted(shapes)}: give it a "
                "fixed "
                "output size (e.g. RandomResizedCrop(28)) so an episode stacks into "
                "one tensor")
        return torch.stack(out)

    def collate(self, tasks: Sequence[Task]) -> TaskBatch:
        """``collate_fn`` for ``DataLoader``: stack the loader's tasks into one ``TaskBatch`` (with
        ``ways``)."""
        return TaskBatch.stack(list(tasks), self.ways)

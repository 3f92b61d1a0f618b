"""One process's share of every meta-batch, for data-parallel (``torch.distributed``) meta-training.

Every process holds the same seeded task source and draws the *whole* meta-batch's random numbers,
then builds only its own slice of tasks: with ``world`` processes of ranks ``0..world-1``, the union
of their slices is exactly the meta-batch one process would draw with the same seed, in the same
order, and every process's generator stays in the same state.  That is what makes a run's result
independent of the number of processes (up to floating-point summation order), and lets a run
saved by one process count be resumed with another: the checkpointed generator state is the same
on every rank.  Drawing the random numbers of tasks a process does not build costs microseconds;
only the process's own images are gathered.
"""
from __future__ import annotations

from typing import Any

from .checks import check_positive
from .errors import DataError
from .types import TaskBatch


class ShardedSource:
    """The tasks ``[rank * B/world, (rank+1) * B/world)`` of each meta-batch of size ``B`` of
    ``source``.

    ``source`` is any task source (``sample``/``state_dict``/``load_state_dict``); an
    ``EpisodeSampler`` builds only this process's episodes, other sources are sliced after sampling.
    ``sample(batch_size)`` takes the *global* meta-batch size, which must divide evenly by
    ``world``.
    """

    def __init__(self, source: Any, rank: int, world: int) -> None:
        check_positive("world", world)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
            raise DataError(
                f"rank must be an integer in 0..{world - 1} for world={world}, got {rank!r}")
        self.source, self.rank, self.world = source, rank, world

    def part(self, batch_size: int) -> slice:
        """The slice of a global meta-batch of ``batch_size`` tasks that this process builds."""
        check_positive("batch_size", batch_size)
        if batch_size % self.world:
            raise DataError(
                f"a meta-batch of {batch_size} tasks does not split evenly over {self.world} "
                "processes: "
                f"use a meta-batch divisible by {self.world} (or another number of "
                "processes)")
        n = batch_size // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def sample(self, batch_size: int) -> TaskBatch:
        """This process's tasks of the next global meta-batch of ``batch_size`` tasks."""
        part = self.part(batch_size)
        if hasattr(self.source, "sample_indices") and hasattr(self.source, "build"):
            _, rows = self.source.sample_indices(batch_size)
            return self.source.build(rows[part])
        batch = self.source.sample(batch_size)
        return TaskBatch(batch.support_x[part], batch.support_y[part], batch.query_x[part],
                         batch.query_y[part],
                         batch.ways)

    def state_dict(self) -> dict:
        """The wrapped source's state (the same on every rank, so any process count can resume
        it)."""
        return self.source.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.source.load_state_dict(state)

    def __repr__(self) -> str:
        return f"ShardedSource({self.source!r}, rank={self.rank}, world={self.world})"

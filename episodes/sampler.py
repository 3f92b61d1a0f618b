"""N-way K-shot Q-query episode sampling over a ``ClassSplit``, vectorised over the whole
meta-batch.

Usage::

    sampler = EpisodeSampler(split, ways=5, shots=1, queries=15, seed=0)
    batch = sampler.sample(32)  # TaskBatch: support_x [32, 5, C, H, W], query_x [32, 75, C, H, W]
    state = sampler.state_dict()  # ... later: sampler.load_state_dict(state) -> same next episodes

How an episode is drawn (all random numbers come from one seeded CPU ``torch.Generator``, so the
episodes are identical on every machine and device; only the final gather runs on the data's
device):

1. classes: one uniform key per split class and task; the ``ways`` smallest keys (``topk``) pick the
   task's classes, without replacement, in random order -- the class at position ``j`` gets label
   ``j``, so the class -> label map is a fresh random permutation per task;
2. examples: for every (task, class) ``shots + queries`` distinct example positions are drawn
   uniformly from ``range(count[class])`` with Robert Floyd's algorithm, vectorised over all
   (task, class) pairs (one step per drawn example, never a per-sample Python loop; classes may have
   different sizes, as in MNIST), then put in uniformly random order by argsort of random keys; the
   first ``shots`` go to the support set, the rest to the query set, so support and query are
   disjoint;
3. rotations, only for a split with ``task_rotations`` (the MAML code's Omniglot protocol): one
   rotation per (task, class), drawn uniformly from the split's list after the draws above;
4. gather: ``split.data[class_offsets[class] + position]`` (rotated) for the whole batch at once,
   converted to float32 (uint8 / 255; float data cast to float32, not rescaled).

Support and query sets are class-major: label ``0``'s ``shots`` examples, then label ``1``'s, ...

``queries`` must be >= 1 (a task without a query set cannot be scored); ``ways`` >= 1 and
``shots`` >= 1; negative values are always errors.
"""
from __future__ import annotations

from typing import Any

import torch

from .checks import check_positive
from .errors import DataError
from .generator_state import restore_generator
from .types import ClassSplit, TaskBatch


def check_seed(seed: Any) -> int:
    """Return ``seed`` if it is a non-negative int (usable by torch and numpy alike), else raise a
    ``DataError``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}: pass e.g. seed=0")
    return seed


def check_episode_shape(split: ClassSplit, ways: int, shots: int, queries: int) -> None:
    """Raise a one-line ``DataError`` unless ``split`` can supply N-way, K-shot, Q-query
    episodes."""
    check_positive("ways", ways)
    check_positive("shots", shots)
    check_positive("queries", queries)
    label = f"split {split.name!r}" if split.name else "the split"
    if split.num_classes == 0 or split.data.shape[0] == 0:
        raise DataError(f"{label} is empty (no classes or no examples): load a split with data")
    if ways > split.num_classes:
        raise DataError(
            f"ways={ways} > {split.num_classes} classes in {label}: lower --ways to at most "
            f"{split.num_classes}"
        )
    counts = split.counts
    smallest = int(counts.min())
    if shots + queries > smallest:
        c = int(torch.argmin(counts))
        raise DataError(
            f"shots+queries={shots + queries} > {smallest} examples of the smallest class "
            f"{split.class_names[c]!r} in {label}: lower --shots/--queries to sum to at most "
            f"{smallest}"
        )


def draw_randoms(generator: torch.Generator, batch_size: int, num_classes: int, ways: int,
                 per_class: int):
    """All the random numbers of ``batch_size`` episodes, drawn in a fixed order from ``generator``
    (CPU).

    Returns ``(class_keys [B, num_classes], floyd_u [B, ways, per_class] float64,
    order_keys [B, ways, per_class])``.
    """
    class_keys = torch.rand(batch_size, num_classes, generator=generator)
    floyd_u = torch.rand(batch_size, ways, per_class, generator=generator, dtype=torch.float64)
    order_keys = torch.rand(batch_size, ways, per_class, generator=generator)
    return class_keys, floyd_u, order_keys


def episode_images(split: ClassSplit) -> torch.Tensor:
    """The images episodes are gathered from: ``split.data``, or, for a split with
    ``task_rotations``, one copy of it per rotation (copy ``r`` rotated by ``task_rotations[r]``),
    so that a class rotated for one task is a row offset (:func:`draw_episodes`) and every later
    step is rotation-blind."""
    if not split.task_rotations:
        return split.data
    return torch.cat(
        [split.data if r % 360 == 0 else torch.rot90(split.data, (r // 90) % 4, dims=(-2, -1))
                      for r in split.task_rotations])


def draw_episodes(generator: torch.Generator, split: ClassSplit, batch_size: int, ways: int,
                  per_class: int,
                  offsets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch_size`` episodes from ``generator``: ``(classes [B, N], rows [B, N,
    per_class])``, ``rows`` indexing :func:`episode_images` of ``split`` (``offsets``:
    ``split.class_offsets`` on the CPU, when the caller keeps a copy)."""
    offsets = split.class_offsets if offsets is None else offsets
    class_keys, floyd_u, order_keys = draw_randoms(generator, batch_size, split.num_classes, ways,
                                                   per_class)
    classes, rows = indices_from_randoms(class_keys, floyd_u, order_keys, offsets, ways)
    if split.task_rotations:
        copies = torch.randint(len(split.task_rotations), (batch_size, ways), generator=generator)
        rows = rows + (copies * split.data.shape[0]).unsqueeze(-1)
    return classes, rows


def indices_from_randoms(
    class_keys: torch.Tensor,
    floyd_u: torch.Tensor,
    order_keys: torch.Tensor,
    class_offsets: torch.Tensor,
    ways: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn the draws of :func:`draw_randoms` into episode indices (all CPU tensor ops).

    Returns ``(classes [B, ways], rows [B, ways, per_class])``: ``classes[b, j]`` is the split class
    with label ``j`` in task ``b``; ``rows`` are indices into ``split.data`` (distinct within a
    task).
    """
    offsets = class_offsets.to("cpu", torch.int64)
    counts = offsets[1:] - offsets[:-1]
    classes = torch.topk(class_keys, ways, dim=1, largest=False, sorted=True).indices  # [B, N]
    n = counts[classes]  # [B, N] population size of each picked class
    per_class = floyd_u.shape[-1]
    picked = torch.empty(floyd_u.shape, dtype=torch.int64)
    # Floyd: for j = n-m, ..., n-1 draw t ~ U{0..j}; take t unless already taken, else take j.
    for i in range(per_class):
        j = n - per_class + i
        t = torch.minimum(torch.floor(floyd_u[..., i] * (j + 1).to(torch.float64)).to(torch.int64),
                          j)
        if i:
            taken = (picked[..., :i] == t.unsqueeze(-1)).any(-1)
            t = torch.where(taken, j, t)
        picked[..., i] = t
    order = torch.argsort(order_keys, dim=-1)
    picked = torch.gather(picked, -1, order)
    rows = offsets[classes].unsqueeze(-1) + picked
    return classes, rows


def gather_batch(data: torch.Tensor, rows: torch.Tensor, shots: int) -> TaskBatch:
    """Build a ``TaskBatch`` from ``rows [B, N, shots+queries]`` of ``data`` (on ``data``'s
    device)."""
    b, ways, per_class = rows.shape
    queries = per_class - shots
    rows = rows.to(data.device)

    def take(r: torch.Tensor) -> torch.Tensor:
        # index_select straight into contiguous [B*N*k, ...]; uint8 / 255 gives float32 in one pass
        x = torch.index_select(data, 0, r.reshape(-1))
        x = torch.div(x, 255.0) if data.dtype == torch.uint8 else x.to(torch.float32)
        return x.view(b, -1, *data.shape[1:])

    labels = torch.arange(ways, device=data.device)
    support_y = labels.repeat_interleave(shots).expand(b, -1).contiguous()
    query_y = labels.repeat_interleave(queries).expand(b, -1).contiguous()
    return TaskBatch(take(rows[:, :, :shots]), support_y, take(rows[:, :, shots:]), query_y, ways)


class EpisodeSampler:
    """Seeded N-way K-shot Q-query episodes from a ``ClassSplit`` (a task source).

    Usage: ``EpisodeSampler(split, ways=5, shots=1, queries=15, seed=0).sample(32)``

    ``device``: where episodes are built (default: where ``split.data`` lives). The split is moved
    there once; random numbers always come from a CPU generator, so a seed gives the same episodes
    on CPU and GPU.
    """

    def __init__(
        self,
        split: ClassSplit,
        ways: int,
        shots: int,
        queries: int,
        seed: int,
        device: str | torch.device | None = None,
    ) -> None:
        check_episode_shape(split, ways, shots, queries)
        check_seed(seed)
        self.split = split if device is None else split.to(device)
        self.ways, self.shots, self.queries, self.seed = ways, shots, queries, seed
        self.device = self.split.data.device
        self._offsets = self.split.class_offsets.to("cpu", torch.int64)
        self._images = episode_images(self.split)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

    def sample_indices(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the next ``batch_size`` episodes as indices: ``(classes [B, N], rows [B, N,
        K+Q])``."""
        check_positive("batch_size", batch_size)
        return draw_episodes(self.generator, self.split, batch_size, self.ways,
                             self.shots + self.queries,
                             self._offsets)

    def sample(self, batch_size: int, return_classes: bool = False):
        """The next meta-batch of ``batch_size`` tasks.

        With ``return_classes=True`` returns ``(batch, classes)``, ``classes [B, N]`` the split
        class index of each label (names: ``split.class_names[classes[b, j]]``).
        """
        classes, rows = self.sample_indices(batch_size)
        batch = self.build(rows)
        return (batch, classes) if return_classes else batch

    def build(self, rows: torch.Tensor) -> TaskBatch:
        """The ``TaskBatch`` of episodes given as ``rows [B, N, K+Q]`` (from
        :meth:`sample_indices`)."""
        return gather_batch(self._images, rows, self.shots)

    def state_dict(self) -> dict:
        """Generator state plus the episode shape (for bit-identical resume)."""
        return {
            "generator": self.generator.get_state(),
            "seed": self.seed,
            "ways": self.ways,
            "shots": self.shots,
            "queries": self.queries,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s generator state: the next episodes continue the saved
        run."""
        for key in ("ways", "shots", "queries"):
            if isinstance(state, dict) and key in state and int(state[key]) != getattr(self, key):
                raise DataError(
                    f"sampler state is for {key}={int(state[key])} but this sampler has "
                    f"{key}={getattr(self, key)}: "
                    "build the sampler with the saved settings"
                )
        restore_generator(self.generator, state, "EpisodeSampler")

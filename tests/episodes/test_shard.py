"""ShardedSource: the ranks' parts of a meta-batch are the single-process meta-batch, split in
order."""
from __future__ import annotations

import pytest
import torch

from episodes import (
    DataError,
    EpisodeSampler,
    FixedEpisodes,
    ShardedSource,
    SinusoidTasks,
    TaskBatch,
    from_arrays,
)


def _split():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (10 * 6, 1, 4, 4), generator=g, dtype=torch.uint8)
    return from_arrays(x, torch.arange(10).repeat_interleave(6))


def _cat(parts: list[TaskBatch]) -> TaskBatch:
    return TaskBatch(*(torch.cat([getattr(p, f) for p in parts]) for f in
                       ("support_x", "support_y", "query_x", "query_y")), parts[0].ways)


@pytest.mark.parametrize("make", [lambda: EpisodeSampler(_split(), 3, 1, 2, seed=5),
                                  lambda: SinusoidTasks(2, 3, seed=5)])
@pytest.mark.parametrize("world", [1, 2, 4])
def test_parts_of_ranks_make_the_whole_meta_batch_every_time(make, world):
    whole, shards = make(), [ShardedSource(make(), r, world) for r in range(world)]
    for _ in range(3):  # the generators stay in step over successive meta-batches
        want = whole.sample(8)
        got = _cat([s.sample(8) for s in shards])
        for f in ("support_x", "support_y", "query_x", "query_y"):
            assert torch.equal(getattr(got, f), getattr(want, f))
    states = [s.state_dict() for s in shards]
    assert all(torch.equal(st["generator"], whole.state_dict()["generator"]) for st in states)


def test_state_moves_between_process_counts():
    two = ShardedSource(EpisodeSampler(_split(), 3, 1, 2, seed=1), 0, 2)
    two.sample(4)
    one = EpisodeSampler(_split(), 3, 1, 2, seed=7)
    one.load_state_dict(two.state_dict())
    ref = EpisodeSampler(_split(), 3, 1, 2, seed=1)
    ref.sample(4)
    assert torch.equal(one.sample(4).support_x, ref.sample(4).support_x)


def test_bad_shards_are_one_clear_error():
    src = SinusoidTasks(2, 3, seed=0)
    with pytest.raises(DataError, match="does not split evenly over 2 processes"):
        ShardedSource(src, 0, 2).sample(3)
    with pytest.raises(DataError, match="rank must be an integer in 0..1"):
        ShardedSource(src, 2, 2)


def test_fixed_episodes_ranges_are_the_same_episodes():
    fixed = FixedEpisodes(_split(), 3, 1, 2, count=7, seed=3)
    whole = list(fixed.batches(3))
    parts = list(fixed.batches(2, 0, 4)) + list(fixed.batches(2, 4, 7))
    assert torch.equal(torch.cat([b.query_x for b in parts]), torch.cat([b.query_x for b in whole]))
    with pytest.raises(DataError, match="episode range 5..9 is not within 0..7"):
        list(fixed.batches(2, 5, 9))

"""FixedEpisodes: same episodes for the same args, independent of batch size, process and count."""
import hashlib
import subprocess
import sys
import textwrap

import pytest
import torch

from episodes import ClassSplit, DataError, EpisodeSampler, FixedEpisodes, Task


def index_split(n_classes=30, per_class=10):
    m = n_classes * per_class
    offsets = torch.arange(n_classes + 1, dtype=torch.int64) * per_class
    return ClassSplit(torch.arange(m, dtype=torch.float32).view(m, 1, 1, 1), offsets,
                      [f"c{i}" for i in range(n_classes)])


def cat_batches(batches):
    bs = list(batches)
    return torch.cat([b.support_x for b in bs]), torch.cat([b.query_x for b in bs]), torch.cat(
        [b.query_y for b in bs])


def test_same_episodes_regardless_of_batch_size():
    split = index_split()
    fixed = FixedEpisodes(split, 5, 2, 3, count=23, seed=3)
    assert len(fixed) == 23
    ref = cat_batches(fixed.batches(23))
    for bs in (1, 4, 7, 50):
        batches = list(fixed.batches(bs))
        assert len(batches) == -(-23 // bs)
        assert all(b.ways == 5 for b in batches)
        got = cat_batches(batches)
        assert all(torch.equal(a, b) for a, b in zip(got, ref))
    one = fixed[5]
    assert isinstance(one, Task)
    assert torch.equal(one.support_x, ref[0][5]) and torch.equal(one.query_x, ref[1][5])
    assert torch.equal(fixed[-1].query_x, ref[1][-1])
    with pytest.raises(IndexError):
        fixed[23]


def test_rebuilt_set_is_identical_and_prefix_stable_and_seed_matters():
    split = index_split()
    a = cat_batches(FixedEpisodes(split, 5, 1, 4, count=12, seed=0).batches(5))
    b = cat_batches(FixedEpisodes(split, 5, 1, 4, count=12, seed=0).batches(12))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    longer = cat_batches(FixedEpisodes(split, 5, 1, 4, count=20, seed=0).batches(20))
    assert torch.equal(longer[0][:12], a[0]) and torch.equal(longer[1][:12], a[1])
    other = cat_batches(FixedEpisodes(split, 5, 1, 4, count=12, seed=1).batches(12))
    assert not torch.equal(other[0], a[0])
    # episodes within the set differ from each other
    assert len({tuple(t.flatten().tolist()) for t in a[0]}) == 12


def test_fixed_episodes_satisfy_sampler_invariants():
    split = index_split(12, 6)
    fixed = FixedEpisodes(split, 4, 2, 3, count=40, seed=9)
    for batch in fixed.batches(16):
        for t in range(len(batch)):
            s = batch.support_x[t].flatten().long()
            q = batch.query_x[t].flatten().long()
            rows = torch.cat([s, q])
            assert rows.unique().numel() == rows.numel()
            cls_s, cls_q = s // 6, q // 6
            for lab in range(4):
                c = cls_s[batch.support_y[t] == lab]
                assert c.numel() == 2 and (c == c[0]).all()
                assert (cls_q[batch.query_y[t] == lab] == c[0]).all()
            assert cls_s.unique().numel() == 4


@pytest.mark.slow
def test_same_fixed_episodes_across_processes():
    split = index_split()
    h = hashlib.sha256()
    for b in FixedEpisodes(split, 5, 1, 2, count=10, seed=42).batches(3):
        for t in (b.support_x, b.support_y, b.query_x, b.query_y):
            h.update(t.contiguous().numpy().tobytes())
    code = textwrap.dedent(
        """
        import hashlib, torch
        from episodes import ClassSplit, FixedEpisodes
        off = torch.arange(31, dtype=torch.int64) * 10
        data = torch.arange(300, dtype=torch.float32).view(300, 1, 1, 1)
        split = ClassSplit(data, off, [f"c{i}" for i in range(30)])
        h = hashlib.sha256()
        for b in FixedEpisodes(split, 5, 1, 2, count=10, seed=42).batches(3):
            for t in (b.support_x, b.support_y, b.query_x, b.query_y):
                h.update(t.contiguous().numpy().tobytes())
        print(h.hexdigest())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == h.hexdigest()


def test_fixed_set_is_not_the_sampler_stream():
    # episode i has its own generator: the set is not just EpisodeSampler(seed).sample(count)
    split = index_split()
    fixed = cat_batches(FixedEpisodes(split, 5, 1, 2, count=4, seed=0).batches(4))
    stream = EpisodeSampler(split, 5, 1, 2, seed=0).sample(4)
    assert not torch.equal(fixed[0], stream.support_x)


def test_errors():
    split = index_split(4, 3)
    with pytest.raises(DataError, match="ways=5 > 4 classes"):
        FixedEpisodes(split, 5, 1, 1, count=3, seed=0)
    with pytest.raises(DataError, match="count must be >= 1"):
        FixedEpisodes(split, 2, 1, 1, count=0, seed=0)
    with pytest.raises(DataError, match="seed must be a non-negative integer"):
        FixedEpisodes(split, 2, 1, 1, count=2, seed=-1)
    with pytest.raises(DataError, match="batch_size must be >= 1"):
        next(FixedEpisodes(split, 2, 1, 1, count=2, seed=0).batches(0))

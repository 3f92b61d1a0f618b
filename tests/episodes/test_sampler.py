"""EpisodeSampler: shapes, invariants (disjoint, balanced, distinct classes), randomness, determinism, resume,
errors."""
import hashlib
import subprocess
import sys
import textwrap

import pytest
import torch

from episodes import ClassSplit, DataError, EpisodeSampler, TaskBatch


def index_split(counts, name="synthetic"):
    """Float split whose example m is the scalar m (shape [1, 1, 1]): episodes reveal their row indices."""
    counts = torch.as_tensor(counts, dtype=torch.int64)
    offsets = torch.zeros(len(counts) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    m = int(offsets[-1])
    data = torch.arange(m, dtype=torch.float32).view(m, 1, 1, 1)
    return ClassSplit(data, offsets, [f"c{i}" for i in range(len(counts))], name)


def class_of(rows, offsets):
    return torch.searchsorted(offsets, rows, right=True) - 1


def rows_of(batch):
    return batch.support_x.flatten(2)[..., 0].long(), batch.query_x.flatten(2)[..., 0].long()


def check_invariants(batch: TaskBatch, split: ClassSplit, ways, shots, queries):
    b = len(batch)
    assert batch.ways == ways
    assert batch.support_y.dtype == torch.int64 and batch.query_y.dtype == torch.int64
    assert batch.support_y.shape == (b, ways * shots) and batch.query_y.shape == (b, ways * queries)
    s_rows, q_rows = rows_of(batch)
    offsets = split.class_offsets
    for t in range(b):
        sy, qy = batch.support_y[t], batch.query_y[t]
        assert sy.min() >= 0 and sy.max() == ways - 1 and qy.min() >= 0 and qy.max() == ways - 1
        assert torch.equal(torch.bincount(sy, minlength=ways), torch.full((ways,), shots))
        assert torch.equal(torch.bincount(qy, minlength=ways), torch.full((ways,), queries))
        all_rows = torch.cat([s_rows[t], q_rows[t]])
        assert all_rows.unique().numel() == all_rows.numel(), "support/query examples must be distinct and disjoint"
        assert not set(s_rows[t].tolist()) & set(q_rows[t].tolist())
        s_cls, q_cls = class_of(s_rows[t], offsets), class_of(q_rows[t], offsets)
        label_class = {}
        for lab, c in zip(torch.cat([sy, qy]).tolist(), torch.cat([s_cls, q_cls]).tolist()):
            assert label_class.setdefault(lab, c) == c, "each label must be a single class"
        assert len(set(label_class.values())) == ways, "a task's classes must be distinct"


@pytest.mark.parametrize("ways,shots,queries", [(5, 1, 15), (5, 5, 5), (20, 1, 5), (20, 5, 3)])
def test_invariants_equal_counts(ways, shots, queries):
    split = index_split([20] * 40)
    sampler = EpisodeSampler(split, ways, shots, queries, seed=1)
    batch = sampler.sample(16)
    assert batch.support_x.shape == (16, ways * shots, 1, 1, 1)
    assert batch.query_x.shape == (16, ways * queries, 1, 1, 1)
    assert batch.support_x.dtype == torch.float32
    check_invariants(batch, split, ways, shots, queries)


def test_unequal_class_counts_mnist_like():
    counts = [5, 31, 7, 100, 6, 12, 9, 50, 5, 18]
    split = index_split(counts)
    sampler = EpisodeSampler(split, ways=4, shots=2, queries=3, seed=7)  # 5 = smallest class count
    for _ in range(5):
        batch, classes = sampler.sample(32, return_classes=True)
        check_invariants(batch, split, 4, 2, 3)
        s_rows, q_rows = rows_of(batch)
        # classes[b, j] is the class of label j
        got = class_of(s_rows, split.class_offsets)
        assert torch.equal(got, classes.repeat_interleave(2, dim=1))


def test_sampling_is_uniform_over_classes_and_examples():
    # Classes with 7 and 3 examples, 3 per class drawn: every position of the 7-example class must
    # be picked with probability 3/7; every class with probability ways/classes.
    split = index_split([7, 3, 7, 3])
    sampler = EpisodeSampler(split, ways=2, shots=1, queries=2, seed=3)
    n_tasks = 4000
    batch, classes = sampler.sample(n_tasks, return_classes=True)
    class_freq = torch.bincount(classes.flatten(), minlength=4).float() / n_tasks
    assert torch.allclose(class_freq, torch.full((4,), 0.5), atol=0.04)
    s_rows, q_rows = rows_of(batch)
    rows = torch.cat([s_rows, q_rows], 1).flatten()
    hits = torch.bincount(rows, minlength=20).float()
    picks_of_class0 = float((classes == 0).sum())
    freq0 = hits[0:7] / picks_of_class0
    assert torch.allclose(freq0, torch.full((7,), 3 / 7), atol=0.05)
    # support position is uniform too (not always the lowest index)
    sup = s_rows[:, 0][classes[:, 0] == 0]
    assert torch.allclose(torch.bincount(sup, minlength=7).float() / len(sup), torch.full((7,), 1 / 7), atol=0.05)


def test_label_permutation_is_random():
    split = index_split([4] * 10)
    _, classes = EpisodeSampler(split, 5, 1, 1, seed=0).sample(200, return_classes=True)
    increasing = (classes[:, 1:] > classes[:, :-1]).all(1)
    assert not increasing.all(), "labels must not always follow class order"
    # label 0 lands on every class sometimes
    assert torch.bincount(classes[:, 0], minlength=10).min() > 0


def test_uint8_scaled_and_float_kept():
    offsets = torch.tensor([0, 3, 6])
    data = torch.arange(6 * 4, dtype=torch.uint8).view(6, 1, 2, 2) * 10
    split = ClassSplit(data, offsets, ["a", "b"])
    batch = EpisodeSampler(split, 2, 1, 2, seed=0).sample(3)
    assert batch.support_x.dtype == torch.float32
    all_x = torch.cat([batch.support_x, batch.query_x], 1).reshape(-1, 1, 2, 2)
    scaled = (all_x * 255).round().to(torch.uint8)
    for img in scaled:
        assert any(torch.equal(img, d) for d in data)
    assert float(all_x.max()) <= 1.0
    fsplit = ClassSplit(data.double() * 3.5, offsets, ["a", "b"])
    fbatch = EpisodeSampler(fsplit, 2, 1, 2, seed=0).sample(3)
    assert fbatch.support_x.dtype == torch.float32
    assert torch.equal(fbatch.support_x, (batch.support_x * 255).round() * 3.5)
    assert torch.equal(fbatch.query_x, (batch.query_x * 255).round() * 3.5)


def test_same_seed_same_episodes_different_seed_differs():
    split = index_split([20] * 50)
    a = EpisodeSampler(split, 5, 1, 5, seed=11).sample(8)
    b = EpisodeSampler(split, 5, 1, 5, seed=11).sample(8)
    c = EpisodeSampler(split, 5, 1, 5, seed=12).sample(8)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    assert not torch.equal(a.support_x, c.support_x)


def test_device_argument_gives_same_episodes():
    split = index_split([6] * 12)
    a = EpisodeSampler(split, 3, 2, 2, seed=5).sample(4)
    b = EpisodeSampler(split, 3, 2, 2, seed=5, device="cpu").sample(4)
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)


def _digest(batch):
    h = hashlib.sha256()
    for t in (batch.support_x, batch.support_y, batch.query_x, batch.query_y):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_same_episodes_across_processes():
    split = index_split([20] * 50)
    mine = _digest(EpisodeSampler(split, 5, 2, 3, seed=21).sample(6))
    code = textwrap.dedent(
        """
        import hashlib, torch
        from episodes import ClassSplit, EpisodeSampler
        counts = torch.full((50,), 20)
        off = torch.zeros(51, dtype=torch.int64); off[1:] = torch.cumsum(counts, 0)
        data = torch.arange(1000, dtype=torch.float32).view(1000, 1, 1, 1)
        split = ClassSplit(data, off, [f"c{i}" for i in range(50)])
        b = EpisodeSampler(split, 5, 2, 3, seed=21).sample(6)
        h = hashlib.sha256()
        for t in (b.support_x, b.support_y, b.query_x, b.query_y):
            h.update(t.contiguous().numpy().tobytes())
        print(h.hexdigest())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == mine


def test_resume_from_state_dict_continues_exactly():
    split = index_split([9] * 30)
    run = EpisodeSampler(split, 5, 2, 3, seed=4)
    run.sample(8)
    state = run.state_dict()
    expected = [run.sample(8) for _ in range(3)]
    resumed = EpisodeSampler(split, 5, 2, 3, seed=999)
    resumed.load_state_dict(state)
    for want in expected:
        got = resumed.sample(8)
        assert torch.equal(got.support_x, want.support_x) and torch.equal(got.query_x, want.query_x)
    # the saved state is a snapshot, not a live view
    again = EpisodeSampler(split, 5, 2, 3, seed=0)
    again.load_state_dict(state)
    assert torch.equal(again.sample(8).query_x, expected[0].query_x)


def test_load_state_dict_rejects_other_shape_and_garbage():
    split = index_split([9] * 30)
    state = EpisodeSampler(split, 5, 2, 3, seed=4).state_dict()
    with pytest.raises(DataError, match="ways=5"):
        EpisodeSampler(split, 4, 2, 3, seed=4).load_state_dict(state)
    with pytest.raises(DataError, match="generator"):
        EpisodeSampler(split, 5, 2, 3, seed=4).load_state_dict({"seed": 1})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(ways=11, shots=1, queries=1), r"ways=11 > 10 classes"),
        (dict(ways=2, shots=3, queries=3), r"shots\+queries=6 > 5 examples of the smallest class 'c2'"),
        (dict(ways=0, shots=1, queries=1), r"ways must be >= 1"),
        (dict(ways=2, shots=0, queries=1), r"shots must be >= 1"),
        (dict(ways=2, shots=-1, queries=1), r"shots must be >= 1"),
        (dict(ways=2, shots=1, queries=0), r"queries must be >= 1"),
        (dict(ways=2, shots=1, queries=-2), r"queries must be >= 1"),
        (dict(ways=2.0, shots=1, queries=1), r"ways must be an integer"),
    ],
)
def test_bad_episode_shape_errors(kwargs, match):
    split = index_split([8, 9, 5, 8, 8, 8, 8, 8, 8, 8])
    with pytest.raises(DataError, match=match) as info:
        EpisodeSampler(split, seed=0, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_batch_size_and_empty_split():
    sampler = EpisodeSampler(index_split([4] * 3), 2, 1, 1, seed=0)
    for bad in (0, -3):
        with pytest.raises(DataError, match="batch_size must be >= 1"):
            sampler.sample(bad)
    empty = ClassSplit(torch.zeros(0, 1, 2, 2, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64), [], "val")
    with pytest.raises(DataError, match="'val' is empty"):
        EpisodeSampler(empty, 1, 1, 1, seed=0)


@pytest.fixture(scope="module")
def omniglot_train(omniglot_root):
    from episodes import load_split

    return load_split("omniglot", "train", root=omniglot_root)


@pytest.mark.parametrize("ways,shots", [(5, 1), (5, 5), (20, 1), (20, 5)])
def test_real_omniglot_vinyals_train(omniglot_train, ways, shots):
    split = omniglot_train
    assert split.num_classes == 4112 and split.data.dtype == torch.uint8
    queries = 15 if ways == 5 else 5
    batch = EpisodeSampler(split, ways, shots, queries, seed=0).sample(32)
    assert batch.support_x.shape == (32, ways * shots, 1, 28, 28)
    assert batch.query_x.shape == (32, ways * queries, 1, 28, 28)
    assert batch.support_x.dtype == torch.float32
    assert 0.0 <= float(batch.support_x.min()) and float(batch.query_x.max()) <= 1.0
    # the same draws as indices: the batch is exactly split.data[rows] / 255, and the rows obey the invariants
    classes, rows = EpisodeSampler(split, ways, shots, queries, seed=0).sample_indices(32)
    images = split.data[rows].float() / 255  # [B, N, K+Q, 1, 28, 28]
    assert torch.equal(batch.support_x, images[:, :, :shots].reshape(32, ways * shots, 1, 28, 28))
    assert torch.equal(batch.query_x, images[:, :, shots:].reshape(32, ways * queries, 1, 28, 28))
    off = split.class_offsets
    assert torch.equal(class_of(rows.flatten(1), off), classes.repeat_interleave(shots + queries, dim=1))
    for t in range(32):
        assert classes[t].unique().numel() == ways
        assert rows[t].unique().numel() == rows[t].numel()

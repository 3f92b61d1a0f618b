"""EpisodeSampler: shapes, invariants (disjoint, balanced, distinct classes), randomness,
determinism, resume, errors."""
import hashlib
import subprocess
import sys
import textwrap

import pytest
import torch

from episodes import ClassSplit, DataError, EpisodeSampler, TaskBatch


def index_split(counts, name="synthetic"):
    """Float split whose example m is the scalar m (shape [1, 1, 1]): episodes reveal their row
    indices."""
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
        assert all_rows.unique().numel() == all_rows.numel(
            ), "support/query examples must be distinct and disjoint"
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
    assert torch.allclose(torch.bincount(sup, minlength=7).float() / len(sup),
                          torch.full((7,), 1 / 7), atol=0.05)


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
        (dict(ways=2, shots=3, queries=3),
         r"shots\+queries=6 > 5 examples of the smallest class 'c2'"),
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
    empty = ClassSplit(torch.zeros(0, 1, 2, 2, dtype=torch.uint8),
                       torch.zeros(1, dtype=torch.int64), [], "val")
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
    # the same draws as indices: the batch is exactly split.data[rows] / 255, and the rows obey the
    # invariants
    classes, rows = EpisodeSampler(split, ways, shots, queries, seed=0).sample_indices(32)
    images = split.data[rows].float() / 255  # [B, N, K+Q, 1, 28, 28]
    assert torch.equal(batch.support_x, images[:, :, :shots].reshape(32, ways * shots, 1, 28, 28))
    assert torch.equal(batch.query_x, images[:, :, shots:].reshape(32, ways * queries, 1, 28, 28))
    off = split.class_offsets
    assert torch.equal(class_of(rows.flatten(1), off),
                       classes.repeat_interleave(shots + queries, dim=1))
    for t in range(32):
        assert classes[t].unique().numel() == ways
        assert rows[t].unique().numel() == rows[t].numel()


def marked_split(counts, rotations=(0, 90, 180, 270)):
    """Images [1, 3, 3] whose one non-zero pixel, m + 1, sits in a corner that tells the rotation
    applied."""
    plain = index_split(counts)
    m = plain.data.shape[0]
    data = torch.zeros(m, 1, 3, 3)
    data[:, 0, 0, 0] = torch.arange(1, m + 1, dtype=torch.float32)
    return ClassSplit(data, plain.class_offsets, plain.class_names, "marked",
                      task_rotations=rotations)


def row_and_quarter_turns(images):
    """``(rows, k)`` of images from :func:`marked_split`: the source row and the counter-clockwise
    quarter turns."""
    corners = [
        tuple(
            torch.rot90(torch.eye(3)[:1].T @ torch.eye(3)[:1], k,
                        dims=(0, 1)).nonzero()[0].tolist())
               for k in range(4)]
    flat = images.reshape(-1, 3, 3)
    rows = flat.flatten(1).max(1).values.long() - 1
    k = torch.tensor([corners.index(tuple(img.nonzero()[0].tolist())) for img in flat])
    return rows.view(images.shape[:2]), k.view(images.shape[:2])


def test_task_rotations_turn_each_class_of_a_task_as_one():
    split = marked_split([20] * 30)
    batch = EpisodeSampler(split, ways=5, shots=2, queries=3, seed=0).sample(400)
    s_rows, s_k = row_and_quarter_turns(batch.support_x)
    q_rows, q_k = row_and_quarter_turns(batch.query_x)
    per_label = torch.cat([s_k.view(400, 5, 2), q_k.view(400, 5, 3)], -1)
    assert (per_label
            == per_label[..., :1]).all(), "a class's support and query images share one rotation"
    rows = torch.cat([s_rows.view(400, 5, 2), q_rows.view(400, 5, 3)], -1)
    classes = class_of(rows, split.class_offsets)
    assert (classes
            == classes[..., :1]).all() and (rows.flatten(1).sort(1).values.diff(dim=1) > 0).all()
    turns = per_label[..., 0]
    counts = torch.bincount(turns.flatten(), minlength=4).double() / turns.numel()
    assert ((counts - 0.25).abs() < 0.03).all(), counts  # 2000 draws: sd 0.01
    mixed = (turns != turns[:, :1]).any(1).double().mean()
    assert mixed > 0.9, "each class of a task gets its own rotation (all five equal: 1/256)"


def test_task_rotations_only_from_the_given_list_and_none_without():
    split = marked_split([20] * 10, rotations=(0, 180))
    _, k = row_and_quarter_turns(EpisodeSampler(split, 5, 1, 1, seed=3).sample(200).support_x)
    assert set(k.flatten().tolist()) == {0, 2}
    plain = marked_split([20] * 10, rotations=())
    _, k = row_and_quarter_turns(EpisodeSampler(plain, 5, 1, 1, seed=3).sample(50).support_x)
    assert set(k.flatten().tolist()) == {0}
    with pytest.raises(DataError, match="task_rotations must be multiples of 90"):
        marked_split([20] * 10, rotations=(0, 45))


def test_task_rotations_fixed_sets_dataset_shards_and_resume_agree():
    from episodes import EpisodeDataset, FixedEpisodes, ShardedSource
    split = marked_split([20] * 30)
    fixed = FixedEpisodes(split, 5, 1, 2, count=12, seed=4)
    whole = next(fixed.batches(12))
    parts = list(fixed.batches(5))
    assert torch.equal(torch.cat([b.support_x for b in parts]), whole.support_x)
    assert torch.equal(fixed[7].query_x, whole.query_x[7])
    dataset = EpisodeDataset(split, 5, 1, 2, episodes=12, seed=4)
    assert torch.equal(dataset[7].support_x, whole.support_x[7]) and torch.equal(dataset[7].query_x,
                                                                                 whole.query_x[7])
    _, k = row_and_quarter_turns(whole.support_x)
    assert len(set(k.flatten().tolist())) > 1
    one = EpisodeSampler(split, 5, 1, 2, seed=9)
    state = one.state_dict()
    expected = one.sample(8)
    shards = [ShardedSource(EpisodeSampler(split, 5, 1, 2, seed=9), rank, 2) for rank in range(2)]
    for shard in shards:
        shard.load_state_dict(state)
    assert torch.equal(torch.cat([s.sample(8).support_x for s in shards]), expected.support_x)

"""EpisodeDataset: item i is FixedEpisodes' episode i, DataLoader workers change nothing, transforms
see every image."""
import pytest
import torch
from torch.utils.data import DataLoader

from episodes import DataError, EpisodeDataset, FixedEpisodes, TaskBatch, from_arrays, load_split


def _split(classes=12, per_class=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (classes * per_class, 1, 6, 6), generator=g, dtype=torch.uint8)
    return from_arrays(x, [i % classes for i in range(classes * per_class)])


def _same(a, b):
    return all(torch.equal(getattr(a, f), getattr(b, f))
               for f in ("support_x", "support_y", "query_x", "query_y"))


def test_items_are_the_fixed_episodes_in_any_order():
    split = _split()
    data = EpisodeDataset(split, ways=5, shots=2, queries=3, episodes=20, seed=7)
    fixed = FixedEpisodes(split, ways=5, shots=2, queries=3, count=20, seed=7)
    for i in (19, 0, 5, 5, -1):
        assert _same(data[i], fixed[i])
    assert len(data) == 20
    with pytest.raises(IndexError):
        data[20]


def test_dataloader_with_two_workers_gives_the_batches_of_no_workers_and_of_fixed_episodes():
    split = _split()
    data = EpisodeDataset(split, ways=4, shots=1, queries=2, episodes=10, seed=3)
    fixed = list(FixedEpisodes(split, ways=4, shots=1, queries=2, count=10, seed=3).batches(4))
    serial = list(DataLoader(data, batch_size=4, num_workers=0, collate_fn=data.collate))
    parallel = list(DataLoader(data, batch_size=4, num_workers=2, collate_fn=data.collate))
    assert [len(b) for b in serial] == [4, 4, 2]
    for a, b, c in zip(serial, parallel, fixed, strict=True):
        assert isinstance(a, TaskBatch) and a.ways == 4 and _same(a, b) and _same(a, c)


def flip_at_random(image: torch.Tensor) -> torch.Tensor:
    """A random augmentation drawing from torch's default generator, as torchvision's do."""
    return image.flip(-1) if torch.rand(()) < 0.5 else image


def test_random_transform_is_applied_to_every_image_and_reproducible_across_workers():
    split = _split()
    plain = EpisodeDataset(split, ways=4, shots=2, queries=3, episodes=8, seed=1)
    shifted = EpisodeDataset(split, ways=4, shots=2, queries=3, episodes=8, seed=1,
                             transform=lambda x: x + 1.0)
    for i in range(8):  # every support and query image went through the transform, labels untouched
        a, b = plain[i], shifted[i]
        assert torch.equal(b.support_x, a.support_x + 1) and torch.equal(b.query_x, a.query_x + 1)
        assert torch.equal(b.support_y, a.support_y) and torch.equal(b.query_y, a.query_y)
    seen = []
    recording = EpisodeDataset(split, ways=4, shots=2, queries=3, episodes=2, seed=1,
                               transform=lambda x: seen.append(tuple(x.shape)) or x)
    recording[0]
    assert seen == [(1, 6, 6)] * (4 * 2 + 4 * 3)  # one call per image, [C, H, W]

    data = EpisodeDataset(split, ways=4, shots=2, queries=3, episodes=8, seed=1,
                          transform=flip_at_random)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    data[0]
    # the caller's generator is left as it was
    assert torch.equal(torch.random.get_rng_state(), before)
    serial = list(DataLoader(data, batch_size=3, num_workers=0, collate_fn=data.collate))
    parallel = list(DataLoader(data, batch_size=3, num_workers=2, collate_fn=data.collate))
    assert all(_same(a, b) for a, b in zip(serial, parallel, strict=True))
    flipped = [not torch.equal(data[i].support_x[k], plain[i].support_x[k]) for i in range(8)
               for k in range(8)]
    assert 0 < sum(flipped) < len(flipped)  # random per image, not all or nothing
    for i in range(8):  # each image is its original or its mirror image
        for x, y in ((data[i].support_x, plain[i].support_x), (data[i].query_x, plain[i].query_x)):
            assert all(torch.equal(a, b) or torch.equal(a, b.flip(-1)) for a, b in zip(x, y))


def test_bad_arguments_are_one_line_errors():
    split = _split()
    with pytest.raises(DataError, match="episodes must be >= 1"):
        EpisodeDataset(split, 4, 1, 1, episodes=0)
    with pytest.raises(DataError, match="transform must be a callable"):
        EpisodeDataset(split, 4, 1, 1, episodes=2, transform="flip")
    with pytest.raises(DataError, match="ways=13 > 12 classes"):
        EpisodeDataset(split, 13, 1, 1, episodes=2)
    ragged = EpisodeDataset(split, 4, 1, 1, episodes=2,
                            transform=lambda x: x[:, : int(torch.randint(2, 6, ()))])
    with pytest.raises(DataError, match="images of different shapes"):
        ragged[0]


def mirror(image: torch.Tensor) -> torch.Tensor:
    """A deterministic augmentation on one ``[C, H, W]`` image, as
    ``transforms.v2.RandomHorizontalFlip(p=1)``."""
    return image.flip(-1)


def test_real_omniglot_with_an_image_transform_in_loader_workers(omniglot_root):
    split = load_split("omniglot", "val", omniglot_root)
    data = EpisodeDataset(split, ways=5, shots=1, queries=15, episodes=4, seed=0, transform=mirror)
    fixed = FixedEpisodes(split, ways=5, shots=1, queries=15, count=4, seed=0)
    batch = next(iter(DataLoader(data, batch_size=4, num_workers=2, collate_fn=data.collate)))
    assert repr(
        batch) == "TaskBatch(tasks=4, ways=5, support=[4, 5, 1, 28, 28], query=[4, 75, 1, 28, 28])"
    want = next(fixed.batches(4))
    assert torch.equal(batch.support_x, want.support_x.flip(-1)) and torch.equal(batch.query_y,
                                                                                 want.query_y)

"""render_episode: grid geometry and pixels equal to the episode tensors."""
import numpy as np
import pytest
import torch

from episodes import (
    ClassSplit,
    DataError,
    EpisodeSampler,
    GridLayout,
    Task,
    TaskBatch,
    render_episode,
)


def synthetic_split(channels=1, n_classes=6, per_class=5, h=7, w=5):
    g = torch.Generator().manual_seed(0)
    m = n_classes * per_class
    data = torch.randint(0, 256, (m, channels, h, w), dtype=torch.uint8, generator=g)
    return ClassSplit(data, torch.arange(n_classes + 1) * per_class,
                      [f"class{i}" for i in range(n_classes)])


def expected_size(ways, shots, queries, th, tw, pad, gap, label_w):
    return label_w + pad + (shots + queries) * (tw + pad) + gap, pad + ways * (th + pad)


@pytest.mark.parametrize("channels,scale", [(1, 1), (1, 3), (3, 2)])
def test_grid_geometry_and_pixels(channels, scale):
    split = synthetic_split(channels)
    ways, shots, queries = 4, 2, 3
    batch, classes = EpisodeSampler(split, ways, shots, queries, seed=1).sample(2,
                                                                                return_classes=True)
    labels = [split.class_names[c] for c in classes[0].tolist()]
    image = render_episode(batch, labels=labels, scale=scale, pad=2, gap=6)
    assert image.mode == ("L" if channels == 1 else "RGB")
    th, tw = 7 * scale, 5 * scale
    # the label column is wider than the padding and the same on every call
    width, height = image.size
    label_w = width - expected_size(ways, shots, queries, th, tw, 2, 6, 0)[0]
    assert label_w > 4
    assert (width, height) == expected_size(ways, shots, queries, th, tw, 2, 6, label_w)
    layout = GridLayout(ways, shots, queries, th, tw, 2, 6, label_w)
    assert layout.size == image.size
    pixels = torch.from_numpy(np.asarray(image).copy())
    if channels == 1:
        pixels = pixels.unsqueeze(-1)
    task = batch.task(0)
    for row in range(ways):
        imgs = [task.support_x[i] for i in range(ways * shots) if task.support_y[i] == row]
        imgs += [task.query_x[i] for i in range(ways * queries) if task.query_y[i] == row]
        assert len(imgs) == shots + queries
        for col, img in enumerate(imgs):
            x0, y0 = layout.tile_origin(row, col)
            want = (img * 255).round().to(torch.uint8).permute(1, 2, 0)
            want = want.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
            assert torch.equal(pixels[y0 : y0 + th, x0 : x0 + tw], want)
    # queries are separated from supports by the gap: first query tile starts pad + gap after last
    # support
    last_support_end = layout.tile_origin(0, shots - 1)[0] + tw
    assert layout.tile_origin(0, shots)[0] == last_support_end + 2 + 6


def test_task_and_batch_render_the_same():
    split = synthetic_split()
    batch = EpisodeSampler(split, 3, 1, 2, seed=2).sample(1)
    a = render_episode(batch)
    b = render_episode(batch.task(0))
    assert a.tobytes() == b.tobytes()


def test_render_errors():
    reg = TaskBatch(torch.zeros(1, 3, 1), torch.zeros(1, 3, 1), torch.zeros(1, 3, 1),
                    torch.zeros(1, 3, 1))
    with pytest.raises(DataError, match="images"):
        render_episode(reg)
    t = Task(torch.zeros(2, 1, 3, 3), torch.tensor([0, 1]), torch.zeros(3, 1, 3, 3),
             torch.tensor([0, 1, 1]))
    with pytest.raises(DataError, match="class-balanced"):
        render_episode(t)
    t = Task(torch.zeros(2, 1, 3, 3), torch.tensor([0, 1]), torch.zeros(2, 1, 3, 3),
             torch.tensor([0, 1]))
    with pytest.raises(DataError, match="labels has 1 entries"):
        render_episode(t, labels=["x"])
    with pytest.raises(DataError, match="scale must be"):
        render_episode(t, scale=0)


def test_picture_size_is_bounded_and_the_message_names_the_largest_scale(monkeypatch):
    import episodes.viz as viz

    batch = EpisodeSampler(synthetic_split(), 3, 1, 1, seed=0).sample(1)
    with pytest.raises(DataError) as info:
        render_episode(batch, scale=100000)  # terabytes before the bound
    msg = str(info.value)
    assert msg.startswith(
        "the episode picture at scale 100000 would be ") and "over the limit of 67,108,864" in msg
    best = int(msg.rsplit("(--scale ", 1)[1].rstrip(")"))
    assert msg.endswith(f": use scale {best} or less (--scale {best})")
    # the named scale is exactly the largest that fits (checked on a small limit to stay cheap)
    monkeypatch.setattr(viz, "MAX_PIXELS", 200_000)
    with pytest.raises(DataError, match=r"use scale (\d+) or less") as info:
        render_episode(batch, scale=1000)
    best = int(str(info.value).rsplit("(--scale ", 1)[1].rstrip(")"))
    width, height = render_episode(batch, scale=best).size
    assert width * height <= 200_000
    with pytest.raises(DataError, match="over the limit"):
        render_episode(batch, scale=best + 1)
    monkeypatch.setattr(viz, "MAX_PIXELS", 10)
    with pytest.raises(DataError, match="show fewer ways, shots or queries"):
        render_episode(batch, scale=1)

"""Custom data: from_arrays, from_image_folder, TaskGenerator, and the runnable example."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from episodes import (
    ClassSplit,
    DataError,
    EpisodeSampler,
    Task,
    TaskGenerator,
    from_arrays,
    from_image_folder,
)

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- from_arrays
def test_from_arrays_sorts_by_class_and_keeps_order_numpy():
    y = np.array([7, 3, 7, 9, 3, 3, 7, 9])
    x = np.arange(8, dtype=np.uint8).reshape(8, 1, 1, 1) * 10
    split = from_arrays(x, y)
    assert isinstance(split, ClassSplit)
    assert split.class_names == ["3", "7", "9"]
    assert split.class_offsets.tolist() == [0, 3, 6, 8]
    assert split.data.dtype == torch.uint8
    # each class holds exactly its examples, in their original order
    for c, label in enumerate([3, 7, 9]):
        want = x[y == label].reshape(-1).tolist()
        lo, hi = split.class_offsets[c], split.class_offsets[c + 1]
        assert split.data[lo:hi].reshape(-1).tolist() == want


def test_from_arrays_torch_float_string_labels_and_names():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    y = ["b", "a", "b", "c", "a", "c"]
    split = from_arrays(x, y, class_names=["alpha", "beta", "gamma"])
    assert split.class_names == ["alpha", "beta", "gamma"]
    assert split.data.dtype == torch.float32
    assert torch.equal(split.data[0:2], x[[1, 4]])
    assert torch.equal(split.data[2:4], x[[0, 2]])
    labels = torch.tensor([10, 20, 10, 20, 30, 30])
    assert from_arrays(x, labels).class_names == ["10", "20", "30"]


def test_from_arrays_feeds_the_sampler_with_unequal_counts():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), [3, 10, 4, 7, 3])
    x = rng.integers(0, 256, size=(len(y), 1, 4, 4), dtype=np.uint8)
    split = from_arrays(x, -y)  # negative labels are fine
    batch = EpisodeSampler(split, 3, 1, 2, seed=0).sample(10)
    assert batch.support_x.shape == (10, 3, 1, 4, 4)


@pytest.mark.parametrize(
    "x,y,match",
    [
        (np.zeros((4, 2), dtype=np.int64), [0, 0, 1, 1], "dtype torch.int64"),
        (np.zeros((4,), dtype=np.uint8), [0, 0, 1, 1], "at least 2 dims"),
        (np.zeros((4, 2), dtype=np.uint8), [0, 0, 1], "one label per example"),
        (np.zeros((4, 2), dtype=np.uint8), [1, 1, 1, 1],
         r"y has 1 distinct label \(1\): episodes need at least 2 "
         "classes; add examples of another class"),
        (np.zeros((0, 2), dtype=np.uint8), [], "empty"),
        # issue 14: strings used to raise a TypeError from torch, NaN/inf were accepted silently
        (np.array([["a", "b"]] * 4), [0, 0, 1, 1],
         r"x must be numeric \(uint8 images or float features\), got numpy "
         r"dtype <U1: convert it first, e.g. "
         r"x.astype\('float32'\)"),
        (np.array([[b"a"]] * 4), [0, 0, 1, 1], "got numpy dtype [|]S1: convert it first"),
        (np.array([[1, 2]] * 4, dtype="datetime64[s]"), [0, 0, 1, 1], "got numpy dtype datetime64"),
        (np.array([[0.0], [1.0], [np.nan], [2.0]]), [0, 0, 1, 1],
         r"x has 1 non-finite values \(NaN or inf\), the first in example 2: remove those examples "
         r"or replace the "
         r"values, e.g. np.nan_to_num\(x\)"),
        (torch.tensor([[0.0], [float("inf")], [1.0], [-float("inf")]]), [0, 0, 1, 1],
         "x has 2 non-finite values .* example 1:"),
        (np.zeros((4, 2), dtype=np.float32), [0.0, np.nan, 1.0, 1.0],
         "y has 1 NaN or inf labels: give every example a real label"),
        (np.zeros((4, 2), dtype=np.float32), np.array([1, "a", 1, "a"], dtype=object),
         "y mixes label types"),
    ],
)
def test_from_arrays_errors(x, y, match):
    with pytest.raises(DataError, match=match) as info:
        from_arrays(x, y)
    assert "\n" not in str(info.value) and ": " in str(info.value)
    with pytest.raises(DataError, match="class_names has 1 names"):
        from_arrays(np.zeros((4, 2), dtype=np.uint8), [0, 0, 1, 1], class_names=["a"])


# ---------------------------------------------------------------- from_image_folder
def make_folder(root: Path, classes=("b_cls", "a_cls"), n=3, size=(12, 10), mode="RGB"):
    rng = np.random.default_rng(1)
    images = {}
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            shape = (size[0], size[1], 3) if mode == "RGB" else size
            arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(arr, mode).save(root / c / f"img{i}.png")
            images[(c, i)] = arr
    return images


def test_from_image_folder_reads_rgb_exactly(tmp_path):
    images = make_folder(tmp_path)
    (tmp_path / "a_cls" / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    split = from_image_folder(tmp_path)
    assert split.class_names == ["a_cls", "b_cls"]
    assert split.data.shape == (6, 3, 12, 10) and split.data.dtype == torch.uint8
    assert split.class_offsets.tolist() == [0, 3, 6]
    assert np.array_equal(split.data[0].permute(1, 2, 0).numpy(), images[("a_cls", 0)])
    assert np.array_equal(split.data[5].permute(1, 2, 0).numpy(), images[("b_cls", 2)])


def test_from_image_folder_grayscale_and_resize(tmp_path):
    images = make_folder(tmp_path, classes=("x", "y", "z"), n=2, size=(8, 8), mode="L")
    split = from_image_folder(tmp_path, grayscale=True)
    assert split.data.shape == (6, 1, 8, 8)
    assert np.array_equal(split.data[2, 0].numpy(), images[("y", 0)])
    small = from_image_folder(tmp_path, size=4, grayscale=True)
    assert small.data.shape == (6, 1, 4, 4)
    want = np.asarray(Image.fromarray(images[("z", 1)]).resize((4, 4), Image.Resampling.BILINEAR))
    assert np.array_equal(small.data[5, 0].numpy(), want)
    assert from_image_folder(tmp_path, size=(4, 6)).data.shape == (6, 3, 4, 6)


def test_from_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="is not a directory"):
        from_image_folder(tmp_path / "missing")
    (tmp_path / "only").mkdir()
    with pytest.raises(DataError, match="1 class subfolders"):
        from_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    Image.new("L", (5, 5)).save(tmp_path / "only" / "a.png")
    with pytest.raises(DataError, match="'.*empty' has no image files"):
        from_image_folder(tmp_path)
    Image.new("L", (5, 6)).save(tmp_path / "empty" / "a.png")
    with pytest.raises(DataError, match="pass size= to resize"):
        from_image_folder(tmp_path)
    assert from_image_folder(tmp_path, size=5).data.shape == (2, 3, 5, 5)
    bad = tmp_path / "empty" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError,
                       match="'.*broken.png' is not a readable image .*: fix or remove the "
                             "file") as info:
        from_image_folder(tmp_path, size=5)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="size must be"):
        from_image_folder(tmp_path, size=0)


def test_from_image_folder_refuses_a_decompression_bomb(tmp_path):
    from tests.episodes.image_fixtures import bomb_png

    make_folder(tmp_path, mode="L")
    # 400 M pixels claimed, ~20 kB on disk
    (tmp_path / "a_cls" / "zz.png").write_bytes(bomb_png(20000, 20000))
    with pytest.raises(DataError) as info:
        from_image_folder(tmp_path, size=8, grayscale=True)
    assert str(info.value) == (
        f"{str(tmp_path / 'a_cls' / 'zz.png')!r} is a decompression bomb (400,000,000 pixels, over "
        "Pillow's limit of "
        "178,956,970): shrink or remove the file (or raise PIL.Image.MAX_IMAGE_PIXELS if you trust "
        "it)")


def test_one_class_folder_says_how_to_fix(tmp_path):
    make_folder(tmp_path, classes=("only",))
    with pytest.raises(DataError,
                       match="has 1 class subfolders: episodes need at least 2 classes; put each "
                             "class's "
                             "images in its own subfolder"):
        from_image_folder(tmp_path)


# ---------------------------------------------------------------- TaskGenerator
def make_task(g: torch.Generator) -> Task:
    x = torch.randn(6, 3, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return Task(x[:3], y[:3], x[3:], y[3:])


def test_task_generator_stacks_tasks_and_infers_ways():
    batch = TaskGenerator(make_task, seed=0).sample(5)
    assert batch.support_x.shape == (5, 3, 3) and batch.query_y.shape == (5, 3)
    assert batch.ways == 3
    # tasks are built in order from one seeded generator
    g = torch.Generator().manual_seed(0)
    want = [make_task(g) for _ in range(5)]
    assert torch.equal(batch.support_x, torch.stack([t.support_x for t in want]))
    assert TaskGenerator(make_task, seed=0, ways=7).sample(1).ways == 7

    def regression(g):
        x = torch.rand(4, 1, generator=g)
        return Task(x[:2], 2 * x[:2], x[2:], 2 * x[2:])

    assert TaskGenerator(regression, seed=0).sample(2).ways is None


def test_task_generator_resume_and_determinism():
    a = TaskGenerator(make_task, seed=3)
    assert torch.equal(a.sample(2).query_x, TaskGenerator(make_task, seed=3).sample(2).query_x)
    state = a.state_dict()
    want = a.sample(4)
    b = TaskGenerator(make_task, seed=99)
    b.load_state_dict(state)
    assert torch.equal(b.sample(4).support_x, want.support_x)


def test_task_generator_errors():
    with pytest.raises(DataError, match="needs a callable"):
        TaskGenerator(42, seed=0)
    with pytest.raises(DataError, match="not an episodes.Task"):
        TaskGenerator(lambda g: (1, 2), seed=0).sample(1)
    sizes = iter([3, 4])

    def ragged(g):
        n = next(sizes)
        return Task(torch.zeros(n, 2), torch.zeros(n, dtype=torch.long), torch.zeros(n, 2),
                    torch.zeros(n, dtype=torch.long))

    with pytest.raises(DataError, match="different shapes"):
        TaskGenerator(ragged, seed=0).sample(2)
    with pytest.raises(DataError, match="batch_size"):
        TaskGenerator(make_task, seed=0).sample(0)


@pytest.mark.slow
def test_example_script_runs():
    out = subprocess.run([sys.executable, str(REPO / "examples" / "custom_data.py")],
                         capture_output=True, text=True,
                         check=True)
    assert "arrays: 6 classes -> (4, 5, 1, 16, 16) (4, 15, 1, 16, 16)" in out.stdout
    assert "folder: ['class0', 'class1', 'class2', 'class3'] -> (2, 6, 1, 16, 16)" in out.stdout
    assert "generator: (8, 10, 2) ways = 2" in out.stdout

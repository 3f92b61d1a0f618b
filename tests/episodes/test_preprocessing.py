"""Preprocessing: the public transform reproduces the stores' pixels exactly, and bad values fail in
one line."""
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from episodes import (
    DataError,
    EpisodeSampler,
    Preprocessing,
    dataset_preprocessing,
    from_image_folder,
    load_split,
)
from episodes.preprocessing import INTERPOLATIONS
from episodes.sampler import gather_batch

OMNIGLOT = Preprocessing(size=28, channels=1, invert=True, interpolation="lanczos")


def _archive_pngs(fewshot_data, part, picks):
    """{(class name, drawing index): PNG bytes} of the raw archive (sorted entries, as the store
    orders them)."""
    out = {}
    with zipfile.ZipFile(fewshot_data / "omniglot" / f"images_{part}.zip") as z:
        names = z.namelist()
        for cls, drawing in picks:
            entries = sorted(n for n in names if n.startswith(f"images_{part}/{cls}/")
                             and n.endswith(".png"))
            out[(cls, drawing)] = z.read(entries[drawing])
    return out


def test_public_transform_reproduces_the_omniglot_store_bit_for_bit(omniglot_root, fewshot_data,
                                                                    tmp_path):
    """Decode real archive PNGs through the public transform; they equal the store's rows (uint8)
    and the sampler's float32 inputs (the store row / 255), bit for bit, from bytes, from a path and
    from a PIL image."""
    assert dataset_preprocessing("omniglot") == OMNIGLOT
    split = load_split("omniglot", "evaluation", omniglot_root)
    picks = [(split.class_names[c], d) for c, d in ((0, 0), (123, 7), (658, 19))]
    pngs = _archive_pngs(fewshot_data, "evaluation", picks)
    rows = torch.tensor(
        [int(split.class_offsets[split.class_names.index(c)]) + d for c, d in picks])
    # what a learner is fed
    fed = gather_batch(split.data, rows.view(1, len(picks), 1), shots=1).support_x[0]
    for i, key in enumerate(picks):
        stored = split.data[rows[i]]
        assert np.array_equal(OMNIGLOT.pixels(pngs[key]), stored.numpy())
        path = tmp_path / f"{i}.png"
        path.write_bytes(pngs[key])
        with Image.open(io.BytesIO(pngs[key])) as im:
            from_pil = OMNIGLOT(im)
        for x in (OMNIGLOT(pngs[key]), OMNIGLOT(path), OMNIGLOT(str(path)), from_pil):
            assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
            assert torch.equal(x, fed[i])
        # independent oracle: Pillow by hand, the MAML paper's 1 - x
        with Image.open(io.BytesIO(pngs[key])) as im:
            by_hand = 255 - np.asarray(im.convert("L").resize((28, 28), Image.Resampling.LANCZOS))
        assert np.array_equal(stored[0].numpy(), by_hand)


def test_folder_through_the_store_transform_equals_the_store(omniglot_root, fewshot_data, tmp_path):
    split = load_split("omniglot", "evaluation", omniglot_root)
    picks = [(split.class_names[c], d) for c in (5, 6) for d in range(3)]
    for (cls, d), data in _archive_pngs(fewshot_data, "evaluation", picks).items():
        folder = tmp_path / cls.replace("/", "_")
        folder.mkdir(exist_ok=True)
        (folder / f"{d:02d}.png").write_bytes(data)
    mine = OMNIGLOT.folder(tmp_path)
    same = from_image_folder(tmp_path, size=28, grayscale=True, invert=True,
                             interpolation="lanczos")
    stored = torch.cat(
        [split.data[int(split.class_offsets[c]):int(split.class_offsets[c]) + 3] for c in (5, 6)])
    assert mine.data.dtype == torch.uint8 and torch.equal(mine.data,
                                                          stored) and torch.equal(same.data, stored)
    assert mine.meta["preprocessing"] == OMNIGLOT.to_dict()
    # the documented default (bilinear, not inverted) gives other pixels: the reason a model's
    # transform exists
    assert not torch.equal(from_image_folder(tmp_path, size=28, grayscale=True).data, stored)


def _gray_folder(root, classes=("a", "b"), n=2, size=(9, 7)):
    rng = np.random.default_rng(0)
    arrays = {}
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, size=size, dtype=np.uint8)
            Image.fromarray(arr, "L").save(root / c / f"{i}.png")
            arrays[(c, i)] = arr
    return arrays


@pytest.mark.parametrize("interpolation", sorted(INTERPOLATIONS))
def test_each_option_does_what_pillow_does(tmp_path, interpolation):
    arrays = _gray_folder(tmp_path)
    prep = Preprocessing(size=(4, 5), channels=1, invert=True, interpolation=interpolation)
    # noise has no polarity: forced
    split = from_image_folder(tmp_path, transform=prep, invert=True)
    want = 255 - np.asarray(
        Image.fromarray(arrays[("b", 1)]).resize((5, 4), INTERPOLATIONS[interpolation]))
    assert split.data.shape == (4, 1, 4, 5)
    assert np.array_equal(split.data[3, 0].numpy(), want)


def test_rgb_scale_and_no_resize(tmp_path):
    arrays = _gray_folder(tmp_path)
    prep = Preprocessing(channels=3, scale=1.0)  # raw 0..255 floats, RGB copies of the gray image
    x = prep(tmp_path / "a" / "0.png")
    assert x.shape == (3, 9, 7) and x.dtype == torch.float32
    assert torch.equal(x[1], torch.from_numpy(arrays[("a", 0)]).float())
    # a non-255 scale is stored as the model's floats (samplers use floats as is)
    split = prep.folder(tmp_path)
    assert split.data.dtype == torch.float32 and torch.equal(split.data[0], x)
    batch = EpisodeSampler(split, ways=2, shots=1, queries=1, seed=0).sample(1)
    assert batch.support_x.max() > 1.0


def test_round_trip_through_a_manifest_dict():
    prep = Preprocessing(size=(20, 30), channels=1, invert=True, interpolation="bicubic")
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    assert prep.to_dict() == {"size": [20, 30], "channels": 1, "invert": True,
                              "interpolation": "bicubic",
                              "scale": 255.0}
    assert dataset_preprocessing("mnist") == Preprocessing(28, 1, False, "lanczos")
    assert dataset_preprocessing("mini-imagenet") == Preprocessing(84, 3, False, "lanczos")


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=0), "size must be a positive int"),
    (dict(size=(3,)), "size must be a positive int"),
    (dict(channels=2), "channels must be 1 .grayscale. or 3"),
    (dict(invert="yes"), "invert must be True or False"),
    (dict(interpolation="cubic"), "unknown interpolation 'cubic': choose one of nearest, bilinear"),
    (dict(scale=0), "scale must be a positive finite number"),
    (dict(scale=float("nan")), "scale must be a positive finite number"),
])
def test_bad_values_fail_in_one_line(kwargs, match):
    with pytest.raises(DataError, match=match) as info:
        Preprocessing(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_inputs_and_conflicting_folder_options(tmp_path):
    with pytest.raises(DataError, match="unknown keys colour: use only size"):
        Preprocessing.from_dict({"colour": 1})
    with pytest.raises(DataError, match="manifest: channels must be"):
        Preprocessing.from_dict({"channels": 4}, where="manifest")
    with pytest.raises(DataError, match="cannot preprocess a list: pass a PIL image, a file path"):
        OMNIGLOT([1, 2])
    with pytest.raises(DataError, match="'.*nope.png' does not exist"):
        OMNIGLOT(tmp_path / "nope.png")
    _gray_folder(tmp_path)
    with pytest.raises(DataError, match="pass either transform= or size/grayscale/interpolation"):
        from_image_folder(tmp_path, size=28, transform=OMNIGLOT)
    with pytest.raises(DataError, match="transform must be an episodes.Preprocessing, got dict"):
        from_image_folder(tmp_path, transform={"size": 28})
    with pytest.raises(DataError, match="unknown interpolation 'linear'"):
        from_image_folder(tmp_path, size=28, interpolation="linear")

"""Every source format converts to the same store: classes, per-class counts, pixels (JPEG: within
tolerance)."""
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from episodes import load_split
from episodes.errors import DataError
from episodes.mini_imagenet import prepare_mini_imagenet
from episodes.mini_imagenet.common import resize_rgb
from episodes.store import Store

from .fixtures import (
    COUNTS,
    WRITERS,
    make_fixture,
    write_cache_pickles,
    write_csvs,
    write_ilsvrc,
    write_torchmeta,
)

ARRAY_FORMATS = ("cache-pickle", "metaopt-pickle", "torchmeta")
JPEG_TOLERANCE = 3.0  # mean |difference| per image, grey levels (q95 JPEG of smooth images is ~1)


def _build(tmp_path, fx, fmt, **kw):
    src = WRITERS[fmt](tmp_path / f"src-{fmt}", fx)
    if fmt == "ilsvrc":
        write_csvs(tmp_path / "csv", fx)
        kw.setdefault("splits", tmp_path / "csv")
    return prepare_mini_imagenet(src, tmp_path / f"root-{fmt}", **{**fx.prepare_kw, **kw})


def _truth(fx, split):
    return np.concatenate([fx.images[split][w] for w in sorted(fx.images[split])]).transpose(0, 3,
                                                                                             1, 2)


def test_all_five_formats_give_the_same_store(tmp_path):
    fx = make_fixture(0)
    stores = {fmt: _build(tmp_path, fx, fmt) for fmt in WRITERS}
    for fmt, path in stores.items():
        with Store(path) as s:
            assert s.attrs["source_format"] == fmt and s.parts() == ["test", "train", "val"]
        for split, (n_classes, per) in COUNTS.items():
            got = load_split("mini-imagenet", split, path.parent.parent)
            assert list(got.class_names) == sorted(fx.images[split]) and len(
                got.class_names) == n_classes
            assert np.diff(got.class_offsets.numpy()).tolist() == [per] * n_classes
            want, data = _truth(fx, split), got.data.numpy()
            assert data.shape == want.shape == (n_classes * per, 3, 84, 84)
            if fmt in ARRAY_FORMATS:
                np.testing.assert_array_equal(data, want)
            else:
                per_image = np.abs(data.astype(int) - want).reshape(len(want), -1).mean(1)
                assert per_image.max() <= JPEG_TOLERANCE, (fmt, split, per_image.max())
                # and no image is closer to another fixture image than to its own (the mapping is
                # right)
                other = np.abs(data.astype(int) - np.roll(want, 1, axis=0)).reshape(len(want),
                                                                                    -1).mean(1)
                assert (other > 10 * JPEG_TOLERANCE).all()


def test_process_pool_gives_the_same_bytes(tmp_path):
    fx = make_fixture(4)
    one = _build(tmp_path / "a", fx, "ilsvrc", workers=1)
    two = _build(tmp_path / "b", fx, "ilsvrc", workers=2)
    with Store(one) as a, Store(two) as b:
        for split in COUNTS:
            pa, pb = a.part(split), b.part(split)
            np.testing.assert_array_equal(pa.images, pb.images)
            assert pa.class_names == pb.class_names


def test_other_sizes_resize_arrays_with_lanczos(tmp_path):
    fx = make_fixture(5)
    path = _build(tmp_path, fx, "torchmeta", size=32)
    assert path.name == "mini-imagenet-32.h5"
    got = load_split("mini-imagenet", "val", path.parent.parent, size=32)
    want = np.stack([np.asarray(resize_rgb(Image.fromarray(im), 32)).transpose(2, 0, 1)
                     for w in sorted(fx.images["val"]) for im in fx.images["val"][w]])
    np.testing.assert_array_equal(got.data.numpy(), want)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_strict_default_rejects_non_ravi_data(tmp_path, fmt):
    fx = make_fixture(6)
    kw = {"strict": True, "expected_counts": None}
    match = (r"train.csv has md5 .*expected 9525e1538f67719f18f1936bf8d0782d"
             if fmt in ("ravi-csv", "ilsvrc")
             else r"split train lacks class n01749939 in the Ravi train split .3 classes found, 64 "
                  r"expected.")
    with pytest.raises(DataError, match=match):
        _build(tmp_path, fx, fmt, **kw)
    assert list(tmp_path.glob(f"root-{fmt}/**/*.h5")) == []


def test_class_with_too_few_images_names_class_and_count(tmp_path):
    fx = make_fixture(7)
    wnid = sorted(fx.images["test"])[1]
    fx.images["test"][wnid] = fx.images["test"][wnid][:3]
    fx.indices["test"][wnid] = fx.indices["test"][wnid][:3]
    for fmt in WRITERS:
        with pytest.raises(DataError,
                           match=f"class {wnid} of split test has 3 images, expected 5: the source "
                                 "is "
                                 "incomplete"):
            _build(tmp_path, fx, fmt)
        assert list(tmp_path.glob(f"root-{fmt}/**/*.h5")) == []


def test_crafted_cache_pickle_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {target}",))

    fx = make_fixture(8)
    src = write_cache_pickles(tmp_path / "src", fx)
    (src / "mini-imagenet-cache-train.pkl").write_bytes(
        pickle.dumps(
            {"image_data": np.zeros((1, 84, 84, 3), np.uint8),
             "class_dict": {"n01532829": Evil()}}))
    with pytest.raises(DataError,
                       match=r"mini-imagenet-cache-train.pkl refers to '\w+.system'.*refusing to "
                             r"load it"):
        prepare_mini_imagenet(src, tmp_path / "root", **fx.prepare_kw)
    assert not target.exists() and not (tmp_path / "root").exists()


def test_existing_store_is_kept_unless_forced(tmp_path):
    fx = make_fixture(9)
    path = _build(tmp_path, fx, "torchmeta")
    stamp = path.stat().st_mtime_ns
    os.utime(path, ns=(0, 0))
    assert prepare_mini_imagenet(tmp_path / "src-torchmeta", tmp_path / "root-torchmeta",
                                 **fx.prepare_kw) == path
    assert path.stat().st_mtime_ns == 0 != stamp
    prepare_mini_imagenet(tmp_path / "src-torchmeta", tmp_path / "root-torchmeta", force=True,
                          **fx.prepare_kw)
    assert path.stat().st_mtime_ns > 0


def test_bad_options_are_data_errors(tmp_path):
    fx = make_fixture(10)
    src = write_torchmeta(tmp_path / "src", fx)
    with pytest.raises(DataError, match="workers must be an integer >= 1"):
        prepare_mini_imagenet(src, tmp_path / "root", **{**fx.prepare_kw, "workers": 0})
    with pytest.raises(DataError, match="--splits .*nowhere is not a folder"):
        prepare_mini_imagenet(src, tmp_path / "root", splits=tmp_path / "nowhere", **fx.prepare_kw)
    write_ilsvrc(tmp_path / "ilsvrc", fx)
    with pytest.raises(DataError, match="no Ravi split CSVs .*pass --splits DIR"):
        prepare_mini_imagenet(tmp_path / "ilsvrc", tmp_path / "root", **fx.prepare_kw)


def test_corrupt_jpeg_in_a_worker_process_fails_cleanly(tmp_path):
    fx = make_fixture(11)
    src = WRITERS["ravi-folders"](tmp_path / "src", fx)
    victim = sorted((src / "val").rglob("*.jpg"))[-1]
    victim.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=f"{victim.name} is not a readable image"):
        prepare_mini_imagenet(src, tmp_path / "root", **{**fx.prepare_kw, "workers": 2})
    assert [p for p in tmp_path.glob("root/**/*") if p.is_file()] == []

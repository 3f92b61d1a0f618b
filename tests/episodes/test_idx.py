"""The idx reader (hand-built files as oracle) and the MNIST / Fashion-MNIST stores on real data."""
import gzip
import os
import struct

import numpy as np
import pytest

from episodes.errors import DataError
from episodes.idx import FASHION_MNIST, load_idx_split, parse_idx, prepare_mnist, read_idx
from episodes.store import Store

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


def _idx(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def test_parse_idx_types_and_endianness():
    u8 = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(_idx(0x08, (2, 3, 4), u8.tobytes())), u8)
    i32 = [1, -2, 70000]
    got = parse_idx(_idx(0x0C, (3,), struct.pack(">3i", *i32)))
    assert got.tolist() == i32 and got.dtype == np.int32 and got.dtype.isnative
    f32 = [0.5, -1.25]
    assert parse_idx(_idx(0x0D, (1, 2), struct.pack(">2f", *f32))).tolist() == [f32]
    assert parse_idx(_idx(0x0B, (2,), struct.pack(">2h", -3, 300))).tolist() == [-3, 300]


def test_read_idx_gz_or_raw(tmp_path):
    raw = _idx(0x08, (5,), bytes([9, 8, 7, 6, 5]))
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    assert read_idx(tmp_path / "a").tolist() == read_idx(tmp_path / "a.gz").tolist() == [9, 8, 7, 6,
                                                                                         5]


def test_bad_idx_files(tmp_path):
    with pytest.raises(DataError, match="bad magic"):
        parse_idx(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DataError, match="unknown idx type code 0x07"):
        parse_idx(_idx(0x07, (1,), b"\x00"))
    with pytest.raises(DataError, match="header cut short"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="holds 3 data bytes, expected 4"):
        parse_idx(_idx(0x08, (2, 2), b"\x00\x01\x02"))
    blob = gzip.compress(_idx(0x08, (100,), bytes(100)))
    (tmp_path / "t.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="not a valid gzip file"):
        read_idx(tmp_path / "t.gz")
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "missing.gz")


def test_real_idx_files(fewshot_data):
    for name in ("mnist", "fashion-mnist"):
        images = read_idx(fewshot_data / name / "t10k-images-idx3-ubyte.gz")
        labels = read_idx(fewshot_data / name / "t10k-labels-idx1-ubyte.gz")
        assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (10000,) and set(np.unique(labels).tolist()) == set(range(10))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_store_is_the_idx_data_sorted_by_label(name, fewshot_data, tmp_path):
    out = prepare_mnist(name, fewshot_data / name, tmp_path, quiet=True)
    assert out == tmp_path / name / f"{name}-28.h5"
    for split, prefix, n in (("train", "train", 60000), ("test", "t10k", 10000)):
        images = read_idx(fewshot_data / name / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(fewshot_data / name / f"{prefix}-labels-idx1-ubyte.gz")
        s = load_idx_split(name, split, tmp_path)
        assert s.data.shape == (n, 1, 28, 28) and s.num_classes == 10
        assert int(s.counts.sum()) == n
        np.testing.assert_array_equal(s.counts.numpy(), np.bincount(labels, minlength=10))
        for c in (0, 7, 9):
            lo, hi = int(s.class_offsets[c]), int(s.class_offsets[c + 1])
            np.testing.assert_array_equal(s.data[lo:hi, 0].numpy(), images[labels == c])
    if name == "fashion-mnist":
        assert list(s.class_names) == list(FASHION_MNIST.class_names) and (s.counts == 1000).all()
    else:
        assert list(s.class_names) == [str(d) for d in range(10)]


@pytest.mark.slow
def test_resized_store(fewshot_data, tmp_path):
    out = prepare_mnist("mnist", fewshot_data / "mnist", tmp_path, size=14, quiet=True)
    s = load_idx_split("mnist", "test", tmp_path, size=14)
    assert out.name == "mnist-14.h5" and s.data.shape == (10000, 1, 14, 14)
    with pytest.raises(DataError, match="fewshot prepare mnist --root .* --size 20"):
        load_idx_split("mnist", "test", tmp_path, size=20)


def _local_copy(tmp_path, fewshot_data, **replace):
    src = tmp_path / "src"
    src.mkdir(parents=True)
    for stem in FILES:
        if stem in replace:
            if replace[stem] is not None:
                (src / f"{stem}.gz").write_bytes(replace[stem])
        else:
            os.symlink(fewshot_data / "mnist" / f"{stem}.gz", src / f"{stem}.gz")
    return src


def _fails_cleanly(src, root, match):
    with pytest.raises(DataError, match=match) as info:
        prepare_mnist("mnist", src, root, quiet=True)
    assert "\n" not in str(info.value)
    assert not root.exists() or [p for p in root.rglob("*") if p.is_file()] == []


def test_content_checks_and_mid_way_failure(fewshot_data, tmp_path):
    labels = gzip.decompress((fewshot_data / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    # The test labels are read after the train part is already in the temp store: a mid-way failure.
    truncated = gzip.compress(labels)[:2000]
    _fails_cleanly(
        _local_copy(tmp_path / "a", fewshot_data, **{"t10k-labels-idx1-ubyte": truncated}),
        tmp_path / "ra",
        "not a valid gzip")
    short = _idx(0x08, (9999,), labels[8:-1])
    _fails_cleanly(
        _local_copy(tmp_path / "b", fewshot_data,
                    **{"t10k-labels-idx1-ubyte": gzip.compress(short)}),
                   tmp_path / "rb",
        r"expected uint8 \(10000,\)")
    bad = _idx(0x08, (10000,), bytes([10]) + labels[9:])
    _fails_cleanly(
        _local_copy(tmp_path / "c", fewshot_data, **{"t10k-labels-idx1-ubyte": gzip.compress(bad)}),
                   tmp_path / "rc",
        "has label 10, expected 0..9")
    _fails_cleanly(_local_copy(tmp_path / "d", fewshot_data, **{"train-images-idx3-ubyte": None}),
                   tmp_path / "rd",
                   "train-images-idx3-ubyte.gz nor")
    raw_ok = _local_copy(tmp_path / "e", fewshot_data, **{"t10k-labels-idx1-ubyte": None})
    (raw_ok / "t10k-labels-idx1-ubyte").write_bytes(labels)  # uncompressed files are accepted too
    out = prepare_mnist("mnist", raw_ok, tmp_path / "re", quiet=True)
    with Store(out) as s:
        assert len(s.part("test").images) == 10000
    with pytest.raises(DataError, match="unknown idx dataset 'kmnist'"):
        prepare_mnist("kmnist", raw_ok, tmp_path)

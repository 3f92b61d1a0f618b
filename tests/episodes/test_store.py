"""The HDF5 store: round trip, atomic writes, and clear errors on bad or foreign files."""
import os

import h5py
import numpy as np
import pytest

from episodes.errors import DataError
from episodes.store import Store, StoreWriter, default_file_mode, offsets_from_counts


def _part(rng, counts, size=5):
    images = rng.integers(0, 256, size=(sum(counts), 1, size, size), dtype=np.uint8)
    return images, offsets_from_counts(counts), [f"class{i}" for i in range(len(counts))]


def test_default_file_mode_follows_umask():
    old = os.umask(0o027)
    try:
        assert default_file_mode() == 0o640
    finally:
        os.umask(old)


def test_offsets_from_counts():
    assert offsets_from_counts([3, 0, 2]).tolist() == [0, 3, 3, 5]
    assert offsets_from_counts([]).tolist() == [0]


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    a, b = _part(rng, [3, 2]), _part(rng, [1, 4, 2])
    path = tmp_path / "d" / "s.h5"
    with StoreWriter(path, dataset="toy", size=5) as w:
        w.add_part("a", *a)
        w.add_part("b", *b)
        w.add_strings("splits/x/train", ["a/class0/rot000", "b/ünï/rot090"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.h5"]  # no temp file left
    assert path.stat().st_mode & 0o777 == default_file_mode()  # not mkstemp's 0600
    with Store(path) as s:
        assert s.parts() == ["a", "b"]
        assert s.attrs["dataset"] == "toy" and s.attrs["size"] == 5
        for name, (images, offsets, names) in (("a", a), ("b", b)):
            part = s.part(name)
            np.testing.assert_array_equal(part.images, images)
            np.testing.assert_array_equal(part.class_offsets, offsets)
            assert part.class_names == names
        assert s.strings("splits/x/train") == ["a/class0/rot000", "b/ünï/rot090"]
        with pytest.raises(DataError, match="no part 'c'"):
            s.part("c")
        with pytest.raises(DataError, match="has no 'splits/y'"):
            s.strings("splits/y")


def test_failure_mid_write_leaves_nothing_and_keeps_old_store(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "s.h5"
    with StoreWriter(path, dataset="old") as w:
        w.add_part("a", *_part(rng, [2]))
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with StoreWriter(path, dataset="new") as w:
            w.add_part("a", *_part(rng, [3, 3]))
            assert len(list(tmp_path.iterdir())) == 2  # the temp file exists while writing
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == before


def test_bad_parts_are_rejected(tmp_path):
    rng = np.random.default_rng(2)
    images, offsets, names = _part(rng, [2, 2])
    with pytest.raises(DataError, match="class_offsets"):
        with StoreWriter(tmp_path / "s.h5") as w:
            w.add_part("a", images, [0, 3, 5], names)
    with pytest.raises(DataError, match="uint8"):
        with StoreWriter(tmp_path / "s.h5") as w:
            w.add_part("a", images.astype(np.float32), offsets, names)
    assert list(tmp_path.iterdir()) == []


def test_missing_foreign_and_old_files(tmp_path):
    with pytest.raises(DataError, match="no store at"):
        Store(tmp_path / "nope.h5", fix_hint="run X")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(DataError, match="not a readable HDF5 file.*run X"):
        Store(tmp_path / "junk.h5", fix_hint="run X")
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(DataError, match="format version 99"):
        Store(tmp_path / "old.h5")


def test_unwritable_folder_is_a_data_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write into"):
        with StoreWriter(blocker / "sub" / "s.h5"):
            pass

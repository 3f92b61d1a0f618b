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


# ----------------------------------------------------------------------------- integrity (issue 14)
def _flip_middle_image_byte(path, part="a"):
    """Flip one bit in the middle of a part's image bytes on disk (what bit rot or a bad copy
    does)."""
    with h5py.File(path, "r") as f:
        ds = f[part]["images"]
        offset, nbytes = ds.id.get_offset(), ds.id.get_storage_size()
    with open(path, "r+b") as fh:
        fh.seek(offset + nbytes // 2)
        byte = fh.read(1)
        fh.seek(offset + nbytes // 2)
        fh.write(bytes([byte[0] ^ 0x10]))


def test_flipped_image_bytes_fail_the_checksum(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "s.h5"
    with StoreWriter(path, dataset="toy") as w:
        w.add_part("a", *_part(rng, [4, 4], size=8))
    with Store(path) as s:
        s.part("a")  # verifies (and caches the result for this file version)
    stat = path.stat()
    _flip_middle_image_byte(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # a later write: a new file version
    with pytest.raises(DataError,
                       match=r"entry 'a' fails its sha256 check .*: the file is damaged; run "
                             r"X") as info:
        with Store(path, fix_hint="run X") as s:
            s.part("a")
    assert "\n" not in str(info.value)


def test_string_lists_are_checksummed(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path) as w:
        w.add_strings("splits/x/train", ["a", "b"])
    with h5py.File(path, "r+") as f:
        f["splits/x/train"][0] = "z"
    with pytest.raises(DataError, match="entry 'splits/x/train' fails its sha256 check"):
        with Store(path) as s:
            s.strings("splits/x/train")


def test_old_store_without_checksums_is_refused_with_the_rebuild_command(tmp_path):
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs["format_version"] = 1
    with pytest.raises(DataError,
                       match=r"older fewshot \(format 1, no content checksum\).*: run `fewshot "
                             r"prepare x --force`"):
        Store(tmp_path / "old.h5", fix_hint="run `fewshot prepare x --force`")
    # A current-format store whose checksum attribute was removed is damaged, not trusted.
    rng = np.random.default_rng(4)
    with StoreWriter(tmp_path / "s.h5") as w:
        w.add_part("a", *_part(rng, [2, 2]))
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        del f["a"].attrs["sha256"]
    with pytest.raises(DataError, match="has no content checksum"):
        with Store(tmp_path / "s.h5") as s:
            s.part("a")


@pytest.mark.parametrize("where", ["create_dataset", "close"])
def test_disk_full_is_one_line_and_leaves_no_temp(tmp_path, monkeypatch, where):
    import errno

    rng = np.random.default_rng(5)
    path = tmp_path / "s.h5"
    with StoreWriter(path, dataset="old") as w:
        w.add_part("a", *_part(rng, [2]))
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = h5py.Group if where == "create_dataset" else h5py.File
    monkeypatch.setattr(target, where, full)
    with pytest.raises(DataError) as info:
        with StoreWriter(path, dataset="new") as w:
            w.add_part("a", *_part(rng, [3, 3], size=100))
    monkeypatch.undo()
    msg = str(info.value)
    assert ("\n" not in msg
            and "no space left on the device (the store needs at least 60.0 kB)" in msg)
    assert f"free space in {tmp_path} or pass --root on a disk with room" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"] and path.read_bytes() == before


def test_stale_temps_of_killed_writes_are_removed_by_the_next_write(tmp_path):
    import episodes.store as store_mod

    rng = np.random.default_rng(6)
    path = tmp_path / "omniglot-28.h5"
    old = store_mod._PROCESS_START - 60
    stale = tmp_path / ".omniglot-28.h5.ab_cd123.tmp"  # what a killed StoreWriter leaves
    keep = {
        # written after this process started: maybe live
        "fresh": tmp_path / ".omniglot-28.h5.zzzzzzzz.tmp",
        "other store": tmp_path / ".omniglot-32.h5.ab_cd123.tmp",
        "not our pattern": tmp_path / ".omniglot-28.h5.notours.tmp",
        "download temp": tmp_path / ".omniglot-28.h5.ab_cd123.part",
        "user file": tmp_path / "omniglot-28.h5.tmp",
    }
    for p in [stale, *keep.values()]:
        p.write_bytes(b"x" * 100)
        if p is not keep["fresh"]:
            os.utime(p, (old, old))
    locked = tmp_path / ".omniglot-28.h5.locked01.tmp"  # an old temp a live writer still holds
    h5py.File(locked, "w").close()
    os.utime(locked, (old, old))
    live = h5py.File(locked, "r+")  # HDF5 locks a file it has open
    try:
        with StoreWriter(path) as w:
            w.add_part("a", *_part(rng, [2]))
        assert not stale.exists() and locked.exists()
        for what, p in keep.items():
            assert p.exists(), what
    finally:
        live.close()
    os.utime(locked, (old, old))  # closing wrote to it
    assert store_mod.remove_stale_temps(path) == [locked]  # its writer is gone: stale now

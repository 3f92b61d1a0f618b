"""episodes.files: the project's one atomic-write helper, file digests and the provenance line."""
import hashlib
import os

import pytest
import torch

import episodes.files as files
from episodes.errors import DataError


def test_default_file_mode_reads_the_umask_without_setting_it(monkeypatch):
    mask = os.umask(0o027)
    try:
        def no_umask(*_):
            raise AssertionError("os.umask called: not thread-safe")

        monkeypatch.setattr(files.os, "umask", no_umask)
        assert files.default_file_mode() == 0o640
    finally:
        monkeypatch.undo()
        os.umask(mask)


def test_atomic_writes_replace_whole_files_with_the_usual_mode(tmp_path):
    path = files.atomic_write_text(tmp_path / "sub" / "a.txt", "old")
    assert path.read_text() == "old" and path.stat().st_mode & 0o777 == files.default_file_mode()
    with files.atomic_open(path) as fh:
        fh.write(b"new")
        assert path.read_text() == "old"  # readers see the old file until the block ends
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_a_failure_inside_the_block_leaves_the_old_file_and_no_temp(tmp_path):
    path = files.atomic_write_bytes(tmp_path / "a.bin", b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with files.atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


@pytest.mark.parametrize("code, message", [
    (28,
     r"no space left on the disk to write .*a.txt \(No space left on device\): free disk space or "
     r"choose another"),
    (5, "cannot write .*a.txt: Input/output error; choose another"),
])
def test_os_errors_become_one_line_errors_of_the_callers_class(tmp_path, monkeypatch, code,
                                                               message):
    class MyError(ValueError):
        pass

    def full(*_):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "replace", full)
    with pytest.raises(MyError, match=message) as info:
        files.atomic_write_text(tmp_path / "a.txt", "x", error=MyError, hint="choose another")
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="cannot write into"):
        files.atomic_write_text(tmp_path / "file" / "a.txt", "x")


def test_digests_and_hardware(tmp_path):
    data = os.urandom(3 * files.CHUNK + 5)
    (tmp_path / "f").write_bytes(data)
    assert files.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert files.md5_file(tmp_path / "f") == hashlib.md5(data).hexdigest()
    with pytest.raises(DataError, match="cannot read"):
        files.sha256_file(tmp_path / "missing")
    line = files.hardware()
    assert (f"torch {torch.__version__.split('+')[0]}" in line
            and f"({torch.get_num_threads()} threads)" in line)

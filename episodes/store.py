"""The canonical HDF5 store: class-sorted uint8 images plus a per-class index, written atomically.

A store file holds one group per *part* (e.g. Omniglot ``background``/``evaluation``, MNIST
``train``/``test``), each with ``images`` uint8 ``[M, C, H, W]`` sorted by class, ``class_offsets``
int64 ``[num_classes + 1]`` and ``class_names`` (UTF-8 strings), plus optional string lists
(e.g. ``splits/vinyals/train``) and file attributes. Loading runs no code (plain HDF5 via h5py).

Integrity (format 2): every part and string list carries the sha256 of its content (attribute
``sha256``), computed once when the store is written and checked when it is read, so a store whose
bytes changed on disk (bit rot, a bad copy, an edit) is refused instead of training silently on
damaged images. A format-1 store (no checksums) is refused with the command that rebuilds it.

Usage::

    with StoreWriter(path, dataset="mnist", size=28) as w:
        w.add_part("train", images, offsets, names)
    with Store(path) as s:
        part = s.part("train")         # StorePart(images, class_offsets, class_names)
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np

from .errors import DataError
from .files import atomic_path, default_file_mode
from .paths import ensure_writable_dir

__all__ = ["FORMAT_VERSION", "Store", "StorePart", "StoreWriter", "default_file_mode",
           "offsets_from_counts",
           "remove_stale_temps"]

FORMAT_VERSION = 2  # 2: per-part / per-list sha256 of the content (1 had none)
_STR = h5py.string_dtype("utf-8")
# When this module was first imported: a temp file last modified before it cannot belong to a write
# of
# this process (see remove_stale_temps).
_PROCESS_START = time.time()
# Store content already verified in this process, keyed by file identity and entry (see
# Store._verify).
_VERIFIED: set[tuple] = set()


@dataclass(frozen=True)
class StorePart:
    """One class-indexed block of a store: ``images[class_offsets[c]:class_offsets[c+1]]`` is class
    ``c``."""

    images: np.ndarray
    class_offsets: np.ndarray
    class_names: list[str]


def offsets_from_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """``[0, c0, c0+c1, ...]`` as int64. Usage: ``offsets_from_counts([20, 20])`` -> ``[0, 20,
    40]``."""
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))]).astype(np.int64)


def content_sha256(images: np.ndarray, class_offsets: np.ndarray,
                   class_names: Sequence[str]) -> str:
    """Hex sha256 of one part's content: the image bytes, the offsets (int64 LE) and the names
    (JSON).

    Usage: ``group.attrs["sha256"] = content_sha256(images, offsets, names)``.
    """
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.uint8).data)
    h.update(np.ascontiguousarray(class_offsets, dtype="<i8").data)
    h.update(json.dumps(list(class_names), ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def strings_sha256(lines: Sequence[str]) -> str:
    """Hex sha256 of a string list (its JSON encoding). Usage: ``strings_sha256(["a", "b"])``."""
    return hashlib.sha256(json.dumps(list(lines), ensure_ascii=False).encode("utf-8")).hexdigest()


def _temp_pattern(path: Path) -> re.Pattern:
    # Exactly what episodes.files.atomic_path's mkstemp(prefix=".<name>.", suffix=".tmp") produces.
    return re.compile(rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp$")


def _locked_by_someone(path: Path) -> bool:
    """Whether another process holds a lock on ``path`` (HDF5 flocks files it has open for
    writing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: rely on the age test alone
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # cannot even look at it: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temp files that killed writes of store ``path`` left beside it; returns what was
    removed.

    Only files named like StoreWriter's own temp files for this very store
    (``.<name>.XXXXXXXX.tmp``), last modified before this process started (so not a write of ours)
    and not locked by a live writer (HDF5 holds a lock on a file it writes) are removed; nothing
    else is touched. Usage: ``remove_stale_temps(store_path("omniglot", root))``.
    """
    path = Path(path)
    pattern = _temp_pattern(path)
    removed: list[Path] = []
    try:
        candidates = [p for p in path.parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return removed
    for p in candidates:
        try:
            st = p.lstat()
            if not os.path.isfile(p) or os.path.islink(
                p) or st.st_mtime >= _PROCESS_START or _locked_by_someone(p):
                continue
            p.unlink()
            removed.append(p)
        except OSError:
            # best effort: a temp file we cannot remove is no reason to fail a good prepare
            continue
    return removed


def _human_bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def write_error(path: Path, exc: OSError, needed_bytes: int = 0) -> "DataError":
    """A one-line DataError for a failed store write, with the fix (free space, or another --root).

    Usage: ``raise write_error(path, exc, images.nbytes) from exc``.
    """
    text = str(exc)
    if exc.errno == errno.ENOSPC or "No space left" in text or "errno = 28" in text:
        need = f" (the store needs at least {_human_bytes(needed_bytes)})" if needed_bytes else ""
        return DataError(f"cannot write store {path}: no space left on the device{need}; "
                         f"free space in {path.parent} or pass --root on a disk with room")
    return DataError(
        f"cannot write store {path}: {exc.strerror or exc}; check that {path.parent} is writable "
        "and has free space, or pass another --root")


def _check_part(name: str, images: np.ndarray, class_offsets: np.ndarray,
                class_names: Sequence[str]) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(
            f"store part '{name}': images must be uint8 [M, C, H, W], got {images.dtype} "
            f"{images.shape}: "
            "convert them before writing (or rebuild the store with `fewshot prepare "
            "... --force`)")
    off = np.asarray(class_offsets)
    if (off.ndim != 1 or len(off) != len(class_names) + 1 or off[0] != 0 or off[-1] != len(images)
            or (np.diff(off) < 0).any()):
        raise DataError(
            f"store part '{name}': class_offsets must run from 0 to {len(images)} with one entry "
            "per class "
            "+ 1: build them with offsets_from_counts (or rebuild the store with "
            "`fewshot prepare ... "
            "--force`)")


class StoreWriter:
    """Write a store to a temp file in the target folder; it replaces ``path`` only on a clean exit.

    Any exception inside the ``with`` block removes the temp file and leaves ``path`` untouched; a
    full disk gives one line with the size the store needs.  After a successful write, temp files
    that killed earlier writes of the same store left behind are removed (``remove_stale_temps``).
    Usage: ``with StoreWriter(path, dataset="omniglot", size=28) as w: w.add_part(...)``.
    """

    def __init__(self, path: str | os.PathLike, **attrs: object) -> None:
        self.path = Path(path)
        self.attrs = attrs
        self._stack = contextlib.ExitStack()
        self._file: h5py.File | None = None
        self._bytes = 0  # image bytes added so far (for the disk-full message)

    def __enter__(self) -> "StoreWriter":
        ensure_writable_dir(self.path.parent)
        tmp = self._stack.enter_context(atomic_path(self.path, hint="pass a writable --root"))
        try:
            self._file = h5py.File(tmp, "w")
            self._file.attrs["format_version"] = FORMAT_VERSION
            for key, value in self.attrs.items():
                self._file.attrs[key] = value
        except OSError as exc:
            self._abort()
            raise write_error(self.path, exc) from exc
        except BaseException:
            self._abort()
            raise
        return self

    def add_part(self, name: str, images: np.ndarray, class_offsets: Sequence[int] | np.ndarray,
                 class_names: Sequence[str]) -> None:
        """Add a class-sorted block of images under group ``name``."""
        assert self._file is not None, "use StoreWriter as a context manager"
        offsets = np.asarray(class_offsets, dtype=np.int64)
        _check_part(name, images, offsets, class_names)
        self._bytes += images.nbytes
        try:
            group = self._file.create_group(name)
            group.create_dataset("images", data=images, dtype=np.uint8)
            group.create_dataset("class_offsets", data=offsets)
            group.create_dataset("class_names", data=np.asarray(list(class_names), dtype=object),
                                 dtype=_STR)
            group.attrs["sha256"] = content_sha256(images, offsets, class_names)
        except OSError as exc:
            raise write_error(self.path, exc, self._bytes) from exc

    def add_strings(self, key: str, lines: Sequence[str]) -> None:
        """Add a list of strings (e.g. a split file's lines) under ``key`` such as
        ``splits/vinyals/train``."""
        assert self._file is not None, "use StoreWriter as a context manager"
        try:
            dataset = self._file.create_dataset(key, data=np.asarray(list(lines), dtype=object),
                                                dtype=_STR)
            dataset.attrs["sha256"] = strings_sha256(lines)
        except OSError as exc:
            raise write_error(self.path, exc, self._bytes) from exc

    def _close_file(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def _abort(self) -> None:
        try:
            self._close_file()
        except Exception:  # noqa: BLE001 (already failing; the temp file is removed below)
            pass
        self._stack.__exit__(RuntimeError, RuntimeError("store not completed"), None)

    def __exit__(self, exc_type, exc_value, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self._close_file()
        except OSError as exc:
            self._abort()
            raise write_error(self.path, exc, self._bytes) from exc
        except BaseException:
            self._abort()
            raise
        self._stack.close()  # fsync, chmod, rename onto the target (an OSError becomes a DataError)
        remove_stale_temps(self.path)  # leftovers of killed earlier writes of this store


class Store:
    """Read-only view of a store file; every read loads a whole dataset at once.

    Usage: ``with Store(path) as s: part = s.part("background"); lines =
    s.strings("splits/vinyals/train")``.
    """

    def __init__(self, path: str | os.PathLike,
                 fix_hint: str = "rebuild it with `fewshot prepare ... --force`") -> None:
        self.path = Path(path)
        self.fix_hint = fix_hint
        try:
            self._file = h5py.File(self.path, "r")
        except FileNotFoundError as exc:
            raise DataError(f"no store at {self.path}: {fix_hint}") from exc
        except OSError as exc:
            raise DataError(
                f"store {self.path} is not a readable HDF5 file ({exc}): {fix_hint}") from exc
        version = self._file.attrs.get("format_version")
        if version == 1:
            self._file.close()
            raise DataError(
                f"store {self.path} was written by an older fewshot (format 1, no content "
                "checksum), "
                f"so its images cannot be verified: {fix_hint}")
        if version != FORMAT_VERSION:
            self._file.close()
            raise DataError(
                f"store {self.path} has format version {version}, expected {FORMAT_VERSION}: "
                f"{fix_hint}")
        st = os.stat(self.path)
        # Identity of the file's current content for the verified-once cache: replacing or rewriting
        # the
        # file (prepare --force, a copy, an edit) changes the inode, size or mtime and forces a
        # re-check.
        self._identity = (str(self.path.resolve()), st.st_dev, st.st_ino, st.st_size,
                          st.st_mtime_ns)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def attrs(self) -> dict:
        """File attributes (``format_version``, ``dataset``, ``size``, ``inverted``, ``source``) as
        Python values."""
        return {k: (v.item() if isinstance(v, np.generic) else v)
                for k, v in self._file.attrs.items()}

    def parts(self) -> list[str]:
        """Names of the class-indexed groups (those holding ``images``)."""
        return sorted(k for k, v in self._file.items() if isinstance(v, h5py.Group)
                      and "images" in v)

    def part(self, name: str) -> StorePart:
        """Read one part whole (a single h5py read per dataset)."""
        if name not in self.parts():
            raise DataError(
                f"store {self.path} has no part '{name}' (has "
                f"{', '.join(self.parts()) or 'none'}): "
                f"{self.fix_hint}")
        try:
            group = self._file[name]
            expected = group.attrs.get("sha256")
            images = group["images"][()]
            offsets = group["class_offsets"][()].astype(np.int64)
            names = [str(s) for s in group["class_names"].asstr()[()]]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(
                f"store {self.path} part '{name}' is unreadable ({exc}): {self.fix_hint}") from exc
        _check_part(name, images, offsets, names)
        self._verify(name, expected, lambda: content_sha256(images, offsets, names))
        return StorePart(images, offsets, names)

    def _verify(self, key: str, expected: object, digest: Callable[[], str]) -> None:
        """Compare an entry's content with the sha256 written with it, once per file version and
        process.

        Why once: hashing runs at ~1.4 GB/s (sha256 with SHA-NI), about 18 ms for the 25 MB Omniglot
        store but ~1 s for 1.3 GB of mini-ImageNet, and training reads the same parts for its train,
        validation and test splits. The cache is keyed on the file's path, device, inode, size and
        mtime (ns), so a store rebuilt or replaced in between is checked again.
        """
        cache_key = (*self._identity, key)
        if cache_key in _VERIFIED:
            return
        if not isinstance(expected, str):
            raise DataError(
                f"store {self.path} entry '{key}' has no content checksum (the file is damaged or "
                f"was not written by fewshot): {self.fix_hint}")
        got = digest()
        if got != expected:
            raise DataError(f"store {self.path} entry '{key}' fails its sha256 check "
                            f"({got[:12]}... != {expected[:12]}...): "
                            f"the file is damaged; {self.fix_hint}")
        _VERIFIED.add(cache_key)

    def has(self, key: str) -> bool:
        """Whether ``key`` (a part or a string list such as ``splits/vinyals/train``) is in the
        store."""
        return key in self._file

    def strings(self, key: str) -> list[str]:
        """Read a string list written by :meth:`StoreWriter.add_strings`."""
        if key not in self._file:
            raise DataError(f"store {self.path} has no '{key}': {self.fix_hint}")
        try:
            dataset = self._file[key]
            expected = dataset.attrs.get("sha256")
            lines = [str(s) for s in dataset.asstr()[()]]
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise DataError(
                f"store {self.path} entry '{key}' is unreadable ({exc}): {self.fix_hint}") from exc
        self._verify(key, expected, lambda: strings_sha256(lines))
        return lines

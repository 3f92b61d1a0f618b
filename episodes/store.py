"""The canonical HDF5 store: class-sorted uint8 images plus a per-class index, written atomically.

A store file holds one group per *part* (e.g. Omniglot ``background``/``evaluation``, MNIST
``train``/``test``), each with ``images`` uint8 ``[M, C, H, W]`` sorted by class, ``class_offsets``
int64 ``[num_classes + 1]`` and ``class_names`` (UTF-8 strings), plus optional string lists
(e.g. ``splits/vinyals/train``) and file attributes. Loading runs no code (plain HDF5 via h5py).

Usage::

    with StoreWriter(path, dataset="mnist", size=28) as w:
        w.add_part("train", images, offsets, names)
    with Store(path) as s:
        part = s.part("train")         # StorePart(images, class_offsets, class_names)
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from .errors import DataError
from .files import atomic_path, default_file_mode
from .paths import ensure_writable_dir

__all__ = ["FORMAT_VERSION", "Store", "StorePart", "StoreWriter", "default_file_mode", "offsets_from_counts"]

FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class StorePart:
    """One class-indexed block of a store: ``images[class_offsets[c]:class_offsets[c+1]]`` is class ``c``."""

    images: np.ndarray
    class_offsets: np.ndarray
    class_names: list[str]


def offsets_from_counts(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """``[0, c0, c0+c1, ...]`` as int64. Usage: ``offsets_from_counts([20, 20])`` -> ``[0, 20, 40]``."""
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))]).astype(np.int64)


def _check_part(name: str, images: np.ndarray, class_offsets: np.ndarray, class_names: Sequence[str]) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"store part '{name}': images must be uint8 [M, C, H, W], got {images.dtype} {images.shape}")
    off = np.asarray(class_offsets)
    if (off.ndim != 1 or len(off) != len(class_names) + 1 or off[0] != 0 or off[-1] != len(images)
            or (np.diff(off) < 0).any()):
        raise DataError(f"store part '{name}': class_offsets must run from 0 to {len(images)} with one entry per class "
                        "+ 1")


class StoreWriter:
    """Write a store to a temp file in the target folder; it replaces ``path`` only on a clean exit.

    Any exception inside the ``with`` block removes the temp file and leaves ``path`` untouched.
    Usage: ``with StoreWriter(path, dataset="omniglot", size=28) as w: w.add_part(...)``.
    """

    def __init__(self, path: str | os.PathLike, **attrs: object) -> None:
        self.path = Path(path)
        self.attrs = attrs
        self._stack = contextlib.ExitStack()
        self._file: h5py.File | None = None

    def __enter__(self) -> "StoreWriter":
        ensure_writable_dir(self.path.parent)
        tmp = self._stack.enter_context(atomic_path(self.path, hint="pass a writable --root"))
        try:
            self._file = h5py.File(tmp, "w")
            self._file.attrs["format_version"] = FORMAT_VERSION
            for key, value in self.attrs.items():
                self._file.attrs[key] = value
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
        group = self._file.create_group(name)
        group.create_dataset("images", data=images, dtype=np.uint8)
        group.create_dataset("class_offsets", data=offsets)
        group.create_dataset("class_names", data=np.asarray(list(class_names), dtype=object), dtype=_STR)

    def add_strings(self, key: str, lines: Sequence[str]) -> None:
        """Add a list of strings (e.g. a split file's lines) under ``key`` such as ``splits/vinyals/train``."""
        assert self._file is not None, "use StoreWriter as a context manager"
        self._file.create_dataset(key, data=np.asarray(list(lines), dtype=object), dtype=_STR)

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
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack.close()  # fsync, chmod, rename onto the target (an OSError becomes a DataError)


class Store:
    """Read-only view of a store file; every read loads a whole dataset at once.

    Usage: ``with Store(path) as s: part = s.part("background"); lines = s.strings("splits/vinyals/train")``.
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
            raise DataError(f"store {self.path} is not a readable HDF5 file ({exc}): {fix_hint}") from exc
        version = self._file.attrs.get("format_version")
        if version != FORMAT_VERSION:
            self._file.close()
            raise DataError(f"store {self.path} has format version {version}, expected {FORMAT_VERSION}: {fix_hint}")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def attrs(self) -> dict:
        """File attributes (``format_version``, ``dataset``, ``size``, ``inverted``, ``source``) as Python values."""
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self._file.attrs.items()}

    def parts(self) -> list[str]:
        """Names of the class-indexed groups (those holding ``images``)."""
        return sorted(k for k, v in self._file.items() if isinstance(v, h5py.Group) and "images" in v)

    def part(self, name: str) -> StorePart:
        """Read one part whole (a single h5py read per dataset)."""
        if name not in self.parts():
            raise DataError(f"store {self.path} has no part '{name}' (has {', '.join(self.parts()) or 'none'}): "
                            f"{self.fix_hint}")
        try:
            group = self._file[name]
            images = group["images"][()]
            offsets = group["class_offsets"][()].astype(np.int64)
            names = [str(s) for s in group["class_names"].asstr()[()]]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"store {self.path} part '{name}' is unreadable ({exc}): {self.fix_hint}") from exc
        _check_part(name, images, offsets, names)
        return StorePart(images, offsets, names)

    def has(self, key: str) -> bool:
        """Whether ``key`` (a part or a string list such as ``splits/vinyals/train``) is in the store."""
        return key in self._file

    def strings(self, key: str) -> list[str]:
        """Read a string list written by :meth:`StoreWriter.add_strings`."""
        if key not in self._file:
            raise DataError(f"store {self.path} has no '{key}': {self.fix_hint}")
        try:
            return [str(s) for s in self._file[key].asstr()[()]]
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"store {self.path} entry '{key}' is unreadable ({exc}): {self.fix_hint}") from exc

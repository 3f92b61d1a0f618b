"""Files written so that readers never see half of one, file digests, and this machine's
description.

The one implementation of atomic writes for both packages (``fewshot`` imports it; ``episodes``
never imports ``fewshot``): the bytes go to a temp file in the target's folder, are fsynced, get the
mode a plain ``open(path, "w")`` would give, and are renamed onto the target with ``os.replace``;
the folder is fsynced after the rename. On any failure the temp file is removed and the target is
untouched. ``OSError``s become one-line errors of the caller's error class (``DataError`` by
default).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import platform
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator, TypeGuard

import torch

from .errors import DataError

CHUNK = 1 << 20
_UMASK_LOCK = threading.Lock()
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_disk_full(exc: BaseException) -> TypeGuard[OSError]:
    """Whether ``exc`` says the disk (or the user's quota) is full: the fix is then to free space,
    not to retry."""
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux:
    ``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Elsewhere the only way to read the umask is to set it; the lock keeps our own threads from
    # seeing the temporary 0 (other code changing the umask concurrently is not protected).
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file under the current umask (e.g.
    0o644)."""
    return 0o666 & ~_current_umask()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, error: type[Exception] = DataError,
                hint: str = "choose a writable folder") -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write (by name: h5py, ``open``); it replaces ``path`` on
    a clean exit.

    Any exception inside the block removes the temp file and leaves ``path`` as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise error(f"cannot write into {path.parent}: {exc.strerror or exc}; {hint}") from exc
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise error(
                f"no space left on the disk to write {path} ({exc.strerror}): free disk space or "
                f"{hint}") from exc
        if isinstance(exc, OSError):
            raise error(f"cannot write {path}: {exc.strerror or exc}; {hint}") from exc
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, error: type[Exception] = DataError,
                hint: str = "choose a writable folder") -> Iterator[IO[bytes]]:
    """Yield a binary file handle whose content replaces ``path`` atomically on a clean exit."""
    with atomic_path(path, error=error, hint=hint) as tmp, open(tmp, "wb") as fh:
        yield fh


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, error: type[Exception] = DataError,
                       hint: str = "choose a writable folder") -> Path:
    """Write ``data`` to ``path``: readers see the old file or the whole new one, never a part."""
    with atomic_open(path, error=error, hint=hint) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, error: type[Exception] = DataError,
                      hint: str = "choose a writable folder") -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"), error=error, hint=hint)


def file_digest(path: str | os.PathLike, algorithm: str, *,
                error: type[Exception] = DataError) -> str:
    """Hex digest (``"md5"``, ``"sha256"``) of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def md5_file(path: str | os.PathLike) -> str:
    """Hex md5 of a file (the checksum the dataset publishers give)."""
    return file_digest(path, "md5")


def sha256_file(path: str | os.PathLike, *, error: type[Exception] = DataError) -> str:
    """Hex sha256 of a file (what manifests and stores record)."""
    return file_digest(path, "sha256", error=error)


def hardware() -> str:
    """One line describing this machine for provenance records: CPU model, torch threads, GPU, torch
    version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    torch_version = torch.__version__.split('+')[0]
    return f"{cpu} ({torch.get_num_threads()} threads){gpu}, torch {torch_version}"

"""One training per run directory: an ``fcntl.flock`` on ``<out>/.run.lock``, and cleanup of killed writes.

Why flock: the kernel drops it when the process exits in any way (SIGKILL and power loss included),
so a lock can never outlive its run and never needs a stale-lock heuristic. The file itself stays
(deleting it would race with a run that just opened it); it holds the pid of the holder for the
error message of a second run.

Usage::

    with RunLock(out):          # ConfigError naming the other pid if a run already holds ``out``
        remove_run_temps(out)   # temp files of killed checkpoint/log writes (only while holding the lock)
        ...
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from types import TracebackType

from ..errors import ConfigError

LOCK_FILE = ".run.lock"
# The files a run writes atomically: their temp files are ``.<name>.XXXXXXXX.tmp`` (episodes.files.atomic_path),
# ``.<name>.tmp-XXXXXXXX`` (the atomic writes of earlier versions), plus check_writable's ``.write-probe-XXXXXXXX``.
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "config.yaml")
_NAMES = "|".join(re.escape(name) for name in RUN_FILES)
TEMP_PATTERN = re.compile(rf"^\.(?:(?:{_NAMES})\.[a-z0-9_]{{8}}\.tmp|(?:{_NAMES})\.tmp-[a-z0-9_]{{8}}"
                          r"|write-probe-[a-z0-9_]{8})$")


class RunLock:
    """Exclusive, non-blocking lock of a run directory for the lifetime of one training run."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self._fd: int | None = None
        self.acquired_at = 0.0

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise a one-line ConfigError naming the process that holds it."""
        import fcntl  # POSIX only; local so that importing the package does not need it

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot create the run lock {self.path}: {exc.strerror}; "
                              "choose a writable --out") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise ConfigError(f"{self.out} is in use by another training run ({who} holds {self.path}): wait for it to "
                              "finish or stop it, or choose another --out") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError:  # the pid is only for the message of a second run; the lock itself is held
            pass
        self._fd = fd
        self.acquired_at = time.time()
        return self

    def release(self) -> None:
        """Drop the lock (closing the file releases the flock); safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def remove_run_temps(out: str | os.PathLike, before: float | None = None) -> list[Path]:
    """Delete temp files that killed checkpoint/config/metrics writes left in run directory ``out``.

    Call it only while holding ``out``'s RunLock: then no other training writes there, so a file with
    exactly our temp-name pattern (and last modified before ``before``, the time the lock was taken)
    is a leftover. Nothing else is touched (no links, no folders, no other names). Returns what was removed.
    """
    out = Path(out)
    removed: list[Path] = []
    try:
        candidates = [p for p in out.iterdir() if TEMP_PATTERN.match(p.name)]
    except OSError:
        return removed
    for p in candidates:
        try:
            st = p.lstat()
            if not os.path.isfile(p) or os.path.islink(p) or (before is not None and st.st_mtime > before):
                continue
            p.unlink()
            removed.append(p)
        except OSError:
            continue
    return removed

"""A run folder: its file names, its lock, its checks, and its config, in one place.

A run directory holds ``config.yaml``, ``last.pt`` (full training state, every ``checkpoint_every``
iterations and at the end), ``best.pt`` (same format, at the best validation score),
``metrics.jsonl``, ``.run.lock`` (while a run holds the folder) and, when TensorBoard is installed,
``tensorboard/``.

The lock is an ``fcntl.flock`` on ``.run.lock``.  Why flock: the kernel drops it when the process
exits in any way (SIGKILL and power loss included), so a lock can never outlive its run and never
needs a stale-lock heuristic.  A run that ends (normally or by an error) also removes the file; one
that was killed leaves it, unlocked, and the next run takes it.  Removing a lock file races with a
run that has just opened it, so ``acquire`` checks, once it holds the flock, that the file it locked
is still the one at the path, and otherwise starts again.  The file holds the pid of the holder for
the error message of a second run.  Usage::

    with RunLock(out):          # ConfigError naming the other pid if a run already holds ``out``
        # temp files of killed checkpoint/log writes (only while holding the lock)
        remove_run_temps(out)
        ...

``RunFolder(out)`` is what the training loop works with: ``open`` (lock an existing folder, decide
whether to resume, read and check its checkpoint), ``claim`` (lock a new one, clean killed writes),
``save_config``, ``release``.  ``load_run_config``/``config_of_checkpoint`` read a finished run's
config (``fewshot eval``, publishing).
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from episodes.paths import ensure_writable_dir

from ..config import TrainConfig, config_from_dict, read_config_file, save_config
from ..errors import ConfigError
from .build import run_identity
from .checkpoint import load_checkpoint

CONFIG_FILE = "config.yaml"
LAST = "last.pt"
BEST = "best.pt"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".run.lock"
# The files a run writes atomically: their temp files are ``.<name>.XXXXXXXX.tmp``
# (episodes.files.atomic_path),
# ``.<name>.tmp-XXXXXXXX`` (the atomic writes of earlier versions), plus check_writable's
# ``.write-probe-XXXXXXXX``.
RUN_FILES = (LAST, BEST, METRICS_FILE, CONFIG_FILE)
_NAMES = "|".join(re.escape(name) for name in RUN_FILES)
TEMP_PATTERN = re.compile(
    rf"^\.(?:(?:{_NAMES})\.[a-z0-9_]{{8}}\.tmp|(?:{_NAMES})\.tmp-[a-z0-9_]{{8}}"
    r"|write-probe-[a-z0-9_]{8})$")
# keys that may differ between a run's saved config and the config it is resumed with
RESUMABLE_CHANGES = {"iterations", "device"}


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

        while True:
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
                raise ConfigError(
                    f"{self.out} is in use by another training run ({who} holds {self.path}): wait "
                    "for it to finish or stop it, or choose another --out") from None
            if _same_file(fd, self.path):
                break
            # the holder removed the file between our open and our flock: lock the new one
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError:  # the pid is only for the message of a second run; the lock itself is held
            pass
        self._fd = fd
        self.acquired_at = time.time()
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (closing the file releases the flock); safe to
        call twice."""
        if self._fd is not None:
            # still holding the flock: a run that opened the file meanwhile sees it gone and retries
            try:
                self.path.unlink()
            except OSError:  # a full or read-only disk: the flock is dropped all the same
                pass
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_held_elsewhere(out: str | os.PathLike) -> bool:
    """Whether a training run holds ``out``'s lock now (it is training there)."""
    import fcntl  # POSIX only, as RunLock

    path = Path(out) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a shared lock taken here
    return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def remove_run_temps(out: str | os.PathLike, before: float | None = None) -> list[Path]:
    """Delete temp files that killed checkpoint/config/metrics writes left in run directory ``out``.

    Call it only while holding ``out``'s RunLock: then no other training writes there, so a file
    with exactly our temp-name pattern (and last modified before ``before``, the time the lock was
    taken) is a leftover. Nothing else is touched (no links, no folders, no other names). Returns
    what was removed.
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
            if not os.path.isfile(p) or os.path.islink(p) or (before is not None
                                                              and st.st_mtime > before):
                continue
            p.unlink()
            removed.append(p)
        except OSError:
            continue
    return removed


def check_writable(out: Path) -> None:
    """Create ``out`` if needed and make sure files can be written there (ConfigError otherwise).

    A folder with no write bits is refused even for root (who could write into it anyway), as on the
    data side; the probe file then catches what mode bits cannot tell (a read-only mount, a full
    quota).
    """
    ensure_writable_dir(out, error=ConfigError, hint="choose another --out")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"output directory {out} is not writable ({exc.strerror}): choose another "
            "--out") from exc


def existing_dir(out: Path) -> bool:
    """``out.is_dir()``, but a folder this user may not look into (``--out /root/runs/x`` for a
    non-root user: ``stat`` fails with EACCES, which ``Path.is_dir`` raises) is a one-line
    ConfigError, not a traceback."""
    try:
        return out.is_dir()
    except OSError as exc:
        raise ConfigError(
            f"cannot look into {exc.filename or out} ({exc.strerror}): choose another --out "
            "(a folder you can write into)") from exc


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """``key: a vs b`` for every leaf where two plain configs differ, except
    ``RESUMABLE_CHANGES``."""
    diffs = []
    for key in sorted(set(a) | set(b)):
        full = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += config_diff(va, vb, full + ".")
        elif va != vb and full not in RESUMABLE_CHANGES:
            diffs.append(f"{full}: {va!r} vs {vb!r}")
    return diffs


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The config of a run directory (``config.yaml``), or ConfigError if it is not a run."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.exists():
        raise ConfigError(
            f"{run_dir} is not a run directory (no {CONFIG_FILE}): pass a `fewshot train --out` "
            "folder")
    return read_config_file(path)


def config_of_checkpoint(ckpt: dict) -> TrainConfig:
    """The TrainConfig stored inside a checkpoint."""
    return config_from_dict(ckpt["config"], where="checkpoint config")


class RunFolder:
    """The run directory one training writes: its paths, its lock and the checks made before
    writing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = RunLock(self.path)
        self.config, self.last, self.best = (self.path / CONFIG_FILE, self.path / LAST,
                                             self.path / BEST)
        self.metrics = self.path / METRICS_FILE

    def open(self, cfg: TrainConfig, resume: bool | None) -> dict[str, Any] | None:
        """Rank 0's check of the folder: lock it if it exists, decide whether to resume, and read
        and check its checkpoint (returned, or None for a new run)."""
        out = self.path
        # lock before reading its checkpoint: another run may be writing there
        if existing_dir(out):
            check_writable(out)
            self.lock.acquire()
        has_ckpt = self.last.exists()
        if resume is True and not has_ckpt:
            raise ConfigError(
                f"--resume given but {self.last} does not exist: drop --resume to start a new run")
        if resume is False and has_ckpt:
            raise ConfigError(
                f"{out} already holds a run ({LAST}): resume it (--resume) or choose another --out")
        if not (has_ckpt and resume is not False):
            return None
        ckpt = load_checkpoint(self.last, expect=run_identity(cfg))
        saved = ckpt["config"]
        if self.config.exists():
            saved = read_config_file(self.config).to_dict()
        diffs = config_diff(saved, cfg.to_dict())
        if diffs:
            raise ConfigError(f"{out} holds a run with another config ({'; '.join(diffs[:3])}): "
                              "resume with the same settings or choose another --out")
        if int(ckpt["iteration"]) > cfg.iterations:
            raise ConfigError(
                f"checkpoint is at iteration {ckpt['iteration']} > iterations={cfg.iterations}: "
                "raise --iterations to continue")
        return ckpt

    def claim(self) -> None:
        """Lock a new folder (created only now that everything is checked) and remove killed writes'
        temps."""
        if not self.lock.held:
            check_writable(self.path)
            self.lock.acquire()
        remove_run_temps(self.path, before=self.lock.acquired_at)

    def save_config(self, cfg: TrainConfig) -> None:
        save_config(cfg, self.config)

    def release(self) -> None:
        self.lock.release()

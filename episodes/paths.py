"""Where data lives: the data root and the per-dataset folders and store files under it.

Usage::

    root = data_root(None)                    # --root, else $FEWSHOT_DATA, else ~/.cache/fewshot
    path = store_path("omniglot", root, 28)   # <root>/omniglot/omniglot-28.h5
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import DataError

ENV_VAR = "FEWSHOT_DATA"
DEFAULT_ROOT = Path("~/.cache/fewshot")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$FEWSHOT_DATA``, else ``~/.cache/fewshot``.

    Usage: ``data_root("/data")`` -> ``Path("/data")``.
    """
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return DEFAULT_ROOT.expanduser()


def dataset_dir(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of one dataset under the data root (archives and store), e.g. ``<root>/mnist``.

    Usage: ``dataset_dir("omniglot", "/data")`` -> ``Path("/data/omniglot")``.
    """
    return data_root(root) / dataset


def store_path(dataset: str, root: str | os.PathLike | None = None, size: int = 28) -> Path:
    """The HDF5 store of ``dataset`` at image side ``size``:
    ``<root>/<dataset>/<dataset>-<size>.h5``.

    Usage: ``store_path("fashion-mnist", None)`` ->
    ``~/.cache/fewshot/fashion-mnist/fashion-mnist-28.h5``.
    """
    return dataset_dir(dataset, root) / f"{dataset}-{int(size)}.h5"


def is_url(source: str | os.PathLike | None) -> bool:
    """Whether a ``--source`` value is a URL (``http://``, ``https://`` or ``file://``) rather than
    a folder.

    Usage: ``is_url("https://example.org/data/")`` -> ``True``.
    """
    return isinstance(source, str) and source.lower().startswith(("http://", "https://", "file://"))


def ensure_writable_dir(folder: str | os.PathLike, *, error: type[Exception] = DataError,
                        hint: str | None = None) -> Path:
    """Create ``folder`` if needed and make sure files can be written there, or raise a one-line
    ``error``.

    A folder whose mode has no write bit at all (e.g. a read-only copy of the raw data sets, like
    ``$FEWSHOT_DATA`` on a shared machine) is refused even for root, who could otherwise write into
    it. ``hint`` (how to fix it) defaults to the data side's "pass a writable --root".
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"cannot write into {folder}: {existing} is a file, not a folder; "
                    f"{hint or 'pass a writable --root'}")
    mode = existing.stat().st_mode
    no_write_bits = not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    if no_write_bits or not os.access(existing, os.W_OK):
        raise error(
            f"cannot write into {existing} (read-only): "
            + (hint
               or f"pass a writable --root (or set {ENV_VAR} to a writable folder and give the raw "
                  "data with "
                  "--source)")
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(
            f"cannot write into {folder}: {exc.strerror or exc}; "
            f"{hint or 'pass a writable --root'}") from exc
    return folder

"""Checksummed downloads: stream to a temp file beside the target, md5 while streaming, rename at
the end.

Usage::

    path = download("https://host/data/train.txt", Path("/data/omniglot/train.txt"), md5="433d...")
    path = fetch("https://host/data/", "train.txt", Path("/data/omniglot"), md5="433d...")
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .errors import DataError
from .files import atomic_open, is_disk_full, md5_file
from .paths import ensure_writable_dir

__all__ = ["download", "fetch", "join_url", "md5_file"]

CHUNK = 1 << 16


def join_url(base: str, name: str) -> str:
    """``base`` (a folder URL, with or without a trailing slash) joined with a relative ``name``.

    Usage: ``join_url("https://h/d", "x.zip")`` -> ``"https://h/d/x.zip"``.
    """
    return base.rstrip("/") + "/" + name.lstrip("/")


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def download(url: str, dest: str | os.PathLike, md5: str | None, *, quiet: bool = False,
             timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, checking its md5 (``None`` = no check).

    The bytes go to a temp file in ``dest``'s folder (hashed while streaming), are fsynced and
    renamed onto ``dest`` only when complete and matching; on any failure nothing is left behind.
    Usage: ``download(url, Path("/data/mnist/train-images-idx3-ubyte.gz"), md5="f68b...")``.
    """
    dest = Path(dest)
    ensure_writable_dir(dest.parent)
    digest = hashlib.md5()
    with atomic_open(dest, hint="pass a writable --root") as out:
        try:
            response = urllib.request.urlopen(url,
                                              timeout=timeout)  # noqa: S310 (http/https/file by design)
        except urllib.error.HTTPError as exc:
            raise DataError(
                f"download of {url} failed: HTTP {exc.code} {exc.reason}; check the URL or use "
                "--source "
                "DIR") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(
                f"download of {url} failed: {reason}; check your connection or use --source "
                "DIR") from exc
        with response:
            total = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            bar = tqdm(
                total=int(total) if total and total.isdigit() else None,
                unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not _show_progress(quiet), leave=False,
            )
            with bar:
                try:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
                except (OSError, urllib.error.URLError) as exc:
                    if is_disk_full(exc):
                        raise DataError(
                            f"no space left on the disk to download {url} into {dest.parent} "
                            f"({exc.strerror}): free disk space or pass a --root on a "
                            "disk with room "
                            "(nothing was kept)") from exc
                    raise DataError(
                        f"download of {url} was interrupted: {exc}; run the command again") from exc
        got = digest.hexdigest()
        if md5 is not None and got != md5.lower():
            raise DataError(
                f"md5 mismatch for {url}: expected {md5}, got {got}; the file is corrupt or "
                "re-packed "
                f"(for a trusted local copy use --source DIR, which checks the content instead)"
            )
    return dest


def fetch(base_url: str, name: str, dest_dir: str | os.PathLike, md5: str | None, *,
          quiet: bool = False) -> Path:
    """Make sure ``dest_dir/name`` exists with the right md5, downloading ``base_url/name`` if
    absent.

    An existing file with the wrong md5 is an error (it is never silently overwritten).
    Usage: ``fetch("https://ossci-datasets.s3.amazonaws.com/mnist/", "t10k-labels-idx1-ubyte.gz",
    root, md5)``.
    """
    dest = Path(dest_dir) / Path(name).name
    if dest.is_file():
        got = md5_file(dest)
        if md5 is not None and got != md5.lower():
            raise DataError(
                f"{dest} has md5 {got}, expected {md5}: delete it to download it again, "
                f"or pass --source {dest.parent} to use it as a local copy (content is checked "
                "instead)"
            )
        return dest
    return download(join_url(base_url, name), dest, md5, quiet=quiet)

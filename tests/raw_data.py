"""Where the tests' raw data sets come from: ``$FEWSHOT_RAW_DATA`` if it holds them, else a download
cache.

The tests that read real archives need the files of :data:`RAW_FILES` in one folder laid out like
``<root>/omniglot/images_background.zip``. :func:`find_raw_data` returns ``$FEWSHOT_RAW_DATA`` when
it is complete; otherwise it downloads the missing files (md5-checked, through
``episodes.download``, with a short timeout so a machine without network fails fast) into the cache
(``$FEWSHOT_TEST_CACHE``, else ``~/.cache/fewshot``, the library's own default data root, so a
user's ``fewshot prepare`` downloads are reused) and returns that. ``FEWSHOT_NO_DOWNLOAD=1`` turns
the download off. Whoever calls it decides whether a :class:`RawDataMissing` skips (a user's
machine) or fails (CI: ``FEWSHOT_REQUIRE_DATA=1``).

Usage: ``root = find_raw_data(os.environ)`` -> ``Path``; ``root / "mnist" /
"t10k-images-idx3-ubyte.gz"``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from episodes import omniglot
from episodes.download import download, join_url
from episodes.errors import DataError
from episodes.idx import FILES as IDX_FILES
from episodes.idx import IDX_DATASETS
from episodes.mini_imagenet import MD5 as RAVI_MD5
from episodes.paths import DEFAULT_ROOT

# The Ravi & Larochelle split lists, where the paper's code publishes them.
RAVI_URL = "https://raw.githubusercontent.com/twitter/meta-learning-lstm/master/data/miniImagenet/"
# per connection: long enough for a real server, short for a machine without network
TIMEOUT_S = 10.0


def _raw_files() -> dict[str, tuple[str, str]]:
    """``{path under the root: (url, md5)}`` of every raw file some test reads."""
    files = {f"omniglot/images_{p}.zip": (join_url(omniglot.BASE_URL, f"images_{p}.zip"),
                                          omniglot.MD5[f"images_{p}.zip"]) for p in omniglot.PARTS}
    for s in omniglot.VINYALS_SPLITS:
        files[f"omniglot/splits/vinyals/{s}.txt"] = (join_url(omniglot.SPLITS_URL, f"{s}.txt"),
                                                     omniglot.MD5[f"splits/vinyals/{s}.txt"])
    for name, spec in IDX_DATASETS.items():
        for stems in IDX_FILES.values():
            for stem in stems:
                files[f"{name}/{stem}.gz"] = (join_url(spec.base_url, f"{stem}.gz"),
                                              spec.md5[f"{stem}.gz"])
    for csv, md5 in RAVI_MD5.items():
        files[f"mini-imagenet/splits/ravi/{csv}"] = (join_url(RAVI_URL, csv), md5)
    return files


RAW_FILES = _raw_files()


class RawDataMissing(Exception):
    """The raw data sets are neither in ``$FEWSHOT_RAW_DATA`` nor downloadable; the message says how
    to fix it."""


def missing_files(root: Path) -> list[str]:
    return [rel for rel in RAW_FILES if not (root / rel).is_file()]


def cache_root(env: Mapping[str, str]) -> Path:
    """Where downloads go: ``$FEWSHOT_TEST_CACHE``, else ``~/.cache/fewshot`` (never
    ``$FEWSHOT_RAW_DATA``, which may be a read-only shared copy)."""
    return Path(env.get("FEWSHOT_TEST_CACHE") or DEFAULT_ROOT).expanduser()


def find_raw_data(env: Mapping[str, str], fetch: Callable[..., Path] = download) -> Path:
    """A folder holding every file of :data:`RAW_FILES`, or :class:`RawDataMissing` with a one-line
    reason.

    ``fetch(url, dest, md5, quiet=, timeout=)`` is ``episodes.download.download`` (tests pass a
    stand-in).
    """
    given = env.get("FEWSHOT_RAW_DATA", "")
    where = f"FEWSHOT_RAW_DATA={given}" if given else "FEWSHOT_RAW_DATA (not set)"
    if given:
        root = Path(given).expanduser().resolve()
        lacking = missing_files(root)
        if not lacking:
            return root
        more = f" and {len(lacking) - 1} more" if len(lacking) > 1 else ""
        where += f" (lacks {lacking[0]}{more})"
    how = (
        "set FEWSHOT_RAW_DATA to a folder holding the raw data sets "
        "(omniglot/images_background.zip, "
        "omniglot/images_evaluation.zip, omniglot/splits/vinyals/*.txt, mnist/*-ubyte.gz, "
        "fashion-mnist/*-ubyte.gz, "
        "mini-imagenet/splits/ravi/*.csv) or allow the download")
    cache = cache_root(env)
    todo = missing_files(cache)
    if not todo:
        return cache
    if env.get("FEWSHOT_NO_DOWNLOAD") == "1":
        raise RawDataMissing(
            f"raw data sets not found in {where} and downloads are off (FEWSHOT_NO_DOWNLOAD=1): "
            f"{how}")
    for rel in todo:
        url, md5 = RAW_FILES[rel]
        try:
            fetch(url, cache / rel, md5, quiet=True, timeout=TIMEOUT_S)
        except DataError as exc:
            raise RawDataMissing(
                f"raw data sets not found in {where} and the download into {cache} failed "
                f"({exc}): {how}") from exc
    return cache

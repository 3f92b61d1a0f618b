"""Detect a source, check it against the Ravi split, and write the canonical store; load splits from
it.

Store: ``<root>/mini-imagenet/mini-imagenet-<size>.h5``, parts ``train``/``val``/``test``, uint8 RGB
``[M, 3, S, S]`` (default 84), classes = wnids sorted, attrs ``source_format`` and ``source``.

Checks (``strict=True``, the default and what ``fewshot prepare`` does): the Ravi CSVs (where a
format uses them) have their published md5s, each split has exactly the Ravi wnids, and every class
has ``expected_counts`` images (default 64/16/20 classes x 600). ``strict=False`` skips the md5 and
wnid checks, for non-official or tiny data (tests); the counts are still checked against
``expected_counts``.

Usage::

    prepare_mini_imagenet("/data/mini-imagenet", root="/tmp/fewshot")   # any of the 5 formats
    split = load_mini_imagenet("val", root="/tmp/fewshot")  # 16 classes x 600, [9600, 3, 84, 84]
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from itertools import repeat
from pathlib import Path
from typing import Callable, Generator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from ..paths import is_url, store_path
from ..store import Store, StoreWriter, offsets_from_counts
from ..types import ClassSplit
from .cache_pickle import read_cache_pickles
from .common import (
    DEFAULT_SIZE,
    EXPECTED_COUNTS,
    NAME,
    RAVI_CLASSES,
    SPLITS,
    ClassImages,
    SourceData,
    decode_file,
    resize_rgb,
)
from .detect import detect_format
from .ilsvrc import read_ilsvrc
from .metaopt_pickle import read_metaopt_pickles
from .ravi import read_ravi_csv, read_ravi_folders
from .torchmeta_h5 import read_torchmeta


def default_workers() -> int:
    """Decoding processes by default: ``min(8, cpu count)``."""
    return max(1, min(8, os.cpu_count() or 1))


def read_source(fmt: str, folder: Path, *, strict: bool = True,
                splits_dir: Path | None = None) -> SourceData:
    """Read ``folder`` as format ``fmt`` (one of ``detect.FORMATS``)."""
    readers: dict[str, Callable[[], SourceData]] = {
        "ravi-csv": lambda: read_ravi_csv(folder, strict=strict, splits_dir=splits_dir),
        "ravi-folders": lambda: read_ravi_folders(folder),
        "cache-pickle": lambda: read_cache_pickles(folder),
        "metaopt-pickle": lambda: read_metaopt_pickles(folder),
        "torchmeta": lambda: read_torchmeta(folder),
        "ilsvrc": lambda: read_ilsvrc(folder, strict=strict, splits_dir=splits_dir),
    }
    return readers[fmt]()


def check_source(data: SourceData, expected_counts: Mapping[str, tuple[int, int]],
                 strict: bool) -> None:
    """Classes and per-class counts of every split, and (``strict``) the Ravi wnids; a DataError
    names the first problem.
    """
    where = f"{data.location} ({data.format})"
    seen: dict[str, str] = {}
    for split in SPLITS:
        classes = data.splits[split]
        want_classes, want_per_class = expected_counts[split]
        if strict:
            missing = sorted(set(RAVI_CLASSES[split]) - set(classes))
            extra = sorted(set(classes) - set(RAVI_CLASSES[split]))
            if missing or extra:
                what = (f"lacks class {missing[0]}" if missing
                        else f"has class {extra[0]}, which is not")
                raise DataError(f"{where}: split {split} {what} in the Ravi {split} split "
                                f"({len(classes)} classes found, {len(RAVI_CLASSES[split])} "
                                "expected): "
                                "the source is incomplete or is not the Ravi & Larochelle split")
        if len(classes) != want_classes:
            raise DataError(
                f"{where}: split {split} has {len(classes)} classes, expected {want_classes}: "
                "the source is incomplete or not mini-ImageNet")
        for wnid, images in classes.items():
            if len(images) != want_per_class:
                raise DataError(
                    f"{where}: class {wnid} of split {split} has {len(images)} images, expected "
                    f"{want_per_class}: the source is incomplete; bring the complete "
                    "files")
            if wnid in seen:
                raise DataError(
                    f"{where}: class {wnid} is in both {seen[wnid]} and {split}: use the original "
                    "split")
            seen[wnid] = split


def _array_chw(images: np.ndarray, size: int) -> np.ndarray:
    """HWC uint8 ``[n, 84, 84, 3]`` -> CHW ``[n, 3, size, size]`` (Lanczos resize if ``size`` !=
    84)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images.transpose(0, 3, 1, 2)
    return np.stack(
        [np.asarray(resize_rgb(Image.fromarray(im), size)).transpose(2, 0, 1) for im in images])


def _decode_all(paths: Sequence[Path], size: int, workers: int) -> Generator[np.ndarray, None,
                                                                             None]:
    """Decode ``paths`` in order, in ``workers`` processes (in this one if ``workers`` <= 1)."""
    if workers <= 1 or len(paths) < 2:
        for p in paths:
            yield decode_file(p, size)
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(paths)))
    try:
        yield from pool.map(decode_file, paths, repeat(size),
                            chunksize=max(1, min(64, len(paths) // (4 * workers))))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _split_images(classes: Mapping[str, ClassImages], size: int, workers: int, desc: str,
                  show: bool) -> np.ndarray:
    total = sum(len(v) for v in classes.values())
    data = np.empty((total, 3, size, size), dtype=np.uint8)
    paths = [p for v in classes.values() if isinstance(v, list) for p in v]
    decoded = _decode_all(paths, size, workers)
    with tqdm(total=total, desc=desc, unit="img", disable=not show,
              leave=False) as bar, closing(decoded):
        i = 0
        for images in classes.values():
            if isinstance(images, np.ndarray):
                data[i:i + len(images)] = _array_chw(images, size)
                i += len(images)
                bar.update(len(images))
            else:
                for _ in images:
                    data[i] = next(decoded)
                    i += 1
                    bar.update(1)
    return data


def prepare_mini_imagenet(
    source: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    *,
    size: int = DEFAULT_SIZE,
    force: bool = False,
    quiet: bool = False,
    strict: bool = True,
    expected_counts: Mapping[str, tuple[int, int]] | None = None,
    splits: str | os.PathLike | None = None,
    workers: int | None = None,
) -> Path:
    """Build ``<root>/mini-imagenet/mini-imagenet-<size>.h5`` from a local source in any of the 5
    formats (no-op if present).

    ``splits``: a folder with the Ravi CSVs (for ``ilsvrc``/``ravi-csv`` when they are not in the
    source). ``workers``: JPEG-decoding processes (default ``min(8, cpu count)``). ``strict=False``
    and ``expected_counts`` (split -> (classes, images per class)) are for non-official data such as
    tests.
    """
    if isinstance(size, bool) or not isinstance(size,
                                                (int, np.integer)) or not 1 <= int(size) <= 1024:
        raise DataError(
            f"image size must be an integer in 1..1024, got {size!r}: pass e.g. --size 84")
    size = int(size)
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise DataError(f"workers must be an integer >= 1, got {workers!r}: pass e.g. --workers 4")
    out = store_path(NAME, root, size)
    if out.exists() and not force:
        return out
    if source is None or is_url(str(source)):
        raise DataError(
            "mini-ImageNet images cannot be downloaded automatically (ImageNet terms): pass "
            "--source PATH holding one "
            "of the 5 supported formats (see docs/data.md, 'mini-ImageNet')"
        )
    splits_dir = None
    if splits is not None:
        splits_dir = Path(splits).expanduser()
        if not splits_dir.is_dir():
            raise DataError(
                f"--splits {splits_dir} is not a folder: pass the folder holding the Ravi "
                "train/val/test "
                "CSVs")
    fmt, folder = detect_format(source)
    data = read_source(fmt, folder, strict=strict, splits_dir=splits_dir)
    check_source(data, {**EXPECTED_COUNTS, **(expected_counts or {})}, strict)
    show = not quiet and sys.stderr.isatty()
    with StoreWriter(out, dataset=NAME, size=size, inverted=False, source=str(folder),
                     source_format=fmt) as writer:
        for split in SPLITS:
            classes = dict(sorted(data.splits[split].items()))
            images = _split_images(classes, size, int(workers), f"{NAME} {split}", show)
            writer.add_part(split, images, offsets_from_counts([len(v) for v in classes.values()]),
                            list(classes))
    return out


def load_mini_imagenet(split: str, root: str | os.PathLike | None = None, *,
                       size: int = DEFAULT_SIZE) -> ClassSplit:
    """Load ``train|val|test`` as uint8 RGB ``[M, 3, S, S]`` from the store.

    Usage: ``load_mini_imagenet("test", "/tmp/fewshot").num_classes`` -> ``20``.
    """
    if split not in SPLITS:
        raise DataError(f"unknown {NAME} split '{split}': choose one of {', '.join(SPLITS)}")
    path = store_path(NAME, root, size)
    cmd = f"fewshot prepare {NAME} --source PATH --root {path.parent.parent}"
    cmd += f" --size {size}" if size != DEFAULT_SIZE else ""
    if not path.is_file():
        raise DataError(
            f"no {NAME} store at {path}: run `{cmd}` (PATH holds mini-ImageNet in one of the 5 "
            "supported "
            "formats)")
    with Store(path, fix_hint=f"run `{cmd} --force` to rebuild it") as store:
        part = store.part(split)
    return ClassSplit(torch.from_numpy(part.images), torch.from_numpy(part.class_offsets),
                      part.class_names,
                      name=f"{NAME}/{split}", meta={"dataset": NAME, "split": split, "size": size})

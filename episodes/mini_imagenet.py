"""mini-ImageNet in the Ravi & Larochelle layout: ``images/*.jpg`` plus ``{train,val,test}.csv``.

Each CSV is ``filename,label`` (e.g. ``n0153282900000005.jpg,n01532829``): 64/16/20 classes x 600 images.
The CSVs are checked against their published md5s; the images (no public checksum, often
re-encoded) are checked by decoding every one. Store: ``<root>/mini-imagenet/mini-imagenet-<size>.h5``
with parts ``train``/``val``/``test``, uint8 RGB ``[M, 3, S, S]`` (default 84), classes = wnids, sorted.
No pickle formats are read (unpickling can run code).

Usage::

    prepare_mini_imagenet("/data/mini-imagenet", root="/tmp/fewshot")   # images/ + CSVs (or splits/ravi/*.csv)
    split = load_mini_imagenet("val", root="/tmp/fewshot")              # 16 classes x 600, [9600, 3, 84, 84]
"""
from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .download import md5_file
from .errors import DataError
from .paths import is_url, store_path
from .store import Store, StoreWriter, offsets_from_counts
from .types import ClassSplit

NAME = "mini-imagenet"
SPLITS = ("train", "val", "test")
DEFAULT_SIZE = 84
MD5 = {
    "train.csv": "9525e1538f67719f18f1936bf8d0782d",
    "val.csv": "ce315ce99b41fbf84fa6acd69315d918",
    "test.csv": "5b89df877c6cbe5d291e43118a2a9591",
}
# split -> (classes, images per class) of the Ravi split.
EXPECTED_COUNTS = {"train": (64, 600), "val": (16, 600), "test": (20, 600)}


def _find_csv(folder: Path, split: str) -> Path:
    for candidate in (folder / f"{split}.csv", folder / "splits" / "ravi" / f"{split}.csv"):
        if candidate.is_file():
            return candidate
    raise DataError(f"no {split}.csv in {folder} or {folder / 'splits' / 'ravi'}: put the Ravi split CSVs there")


def read_split_csv(path: str | os.PathLike, expected_md5: str | None = None) -> dict[str, list[str]]:
    """Parse a Ravi CSV into ``{label: [filenames]}`` (labels sorted, files sorted), checking its md5.

    Usage: ``read_split_csv("val.csv", MD5["val.csv"])["n01855672"][:2]``.
    """
    path = Path(path)
    if expected_md5 is not None:
        got = md5_file(path)
        if got != expected_md5:
            raise DataError(f"{path} has md5 {got}, expected {expected_md5}: use the original Ravi split file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise DataError(f"{path} must start with the header 'filename,label': use the original Ravi split file")
    classes: dict[str, list[str]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or not row[0] or not row[1] or "/" in row[0] or "\\" in row[0]:
            raise DataError(f"{path}:{n}: expected 'filename,label', got {','.join(row)!r}")
        classes.setdefault(row[1], []).append(row[0])
    return {label: sorted(files) for label, files in sorted(classes.items())}


def decode_jpeg(data: bytes, size: int, what: str = "image") -> np.ndarray:
    """Decode an image file into uint8 RGB ``[3, size, size]`` (Lanczos resize if needed).

    Usage: ``decode_jpeg(Path("x.jpg").read_bytes(), 84)``.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{what} is not a readable image ({exc}); the data is corrupt: replace it") from exc
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def prepare_mini_imagenet(
    source: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    *,
    size: int = DEFAULT_SIZE,
    force: bool = False,
    quiet: bool = False,
    md5: Mapping[str, str | None] | None = None,
    expected_counts: Mapping[str, tuple[int, int]] | None = None,
) -> Path:
    """Build ``<root>/mini-imagenet/mini-imagenet-<size>.h5`` from a local Ravi-layout folder (no-op if present).

    ``md5`` overrides entries of :data:`MD5` (``None`` skips a check); ``expected_counts`` overrides
    :data:`EXPECTED_COUNTS` (both for tests on small synthetic folders).
    Usage: ``prepare_mini_imagenet("/data/mini-imagenet", "/tmp/fewshot")``.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= int(size) <= 1024:
        raise DataError(f"image size must be an integer in 1..1024, got {size!r}: pass e.g. --size 84")
    size = int(size)
    out = store_path(NAME, root, size)
    if out.exists() and not force:
        return out
    if source is None or is_url(str(source)):
        raise DataError(
            "mini-ImageNet images cannot be downloaded automatically (ImageNet terms): pass --source DIR holding "
            "images/*.jpg and the Ravi train/val/test CSVs"
        )
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise DataError(f"--source {folder} is not a folder: pass the folder holding images/ and the Ravi CSVs")
    table = {**MD5, **(md5 or {})}
    counts_table = {**EXPECTED_COUNTS, **(expected_counts or {})}
    splits = {s: read_split_csv(_find_csv(folder, s), table[f"{s}.csv"]) for s in SPLITS}
    seen: dict[str, str] = {}
    for split, classes in splits.items():
        want_classes, want_per_class = counts_table[split]
        if len(classes) != want_classes:
            raise DataError(f"{split}.csv lists {len(classes)} classes, expected {want_classes}: use the original Ravi split file")
        for label, files in classes.items():
            if len(files) != want_per_class:
                raise DataError(f"{split}.csv class {label} has {len(files)} images, expected {want_per_class}: use the original Ravi split file")
            if label in seen:
                raise DataError(f"class {label} is in both {seen[label]}.csv and {split}.csv: use the original Ravi split files")
            seen[label] = split
    images_dir = folder / "images"
    missing = [f for classes in splits.values() for files in classes.values() for f in files if not (images_dir / f).is_file()]
    if missing:
        raise DataError(f"{len(missing)} images listed in the CSVs are missing from {images_dir} (e.g. {missing[0]}): copy all images there")
    with StoreWriter(out, dataset=NAME, size=size, inverted=False, source=str(folder)) as writer:
        for split, classes in splits.items():
            total = sum(len(v) for v in classes.values())
            data = np.empty((total, 3, size, size), dtype=np.uint8)
            bar = tqdm(total=total, desc=f"{NAME} {split}", unit="img", disable=quiet or not sys.stderr.isatty(), leave=False)
            i = 0
            with bar:
                for files in classes.values():
                    for name in files:
                        path = images_dir / name
                        try:
                            blob = path.read_bytes()
                        except OSError as exc:
                            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
                        data[i] = decode_jpeg(blob, size, what=str(path))
                        i += 1
                    bar.update(len(files))
            writer.add_part(split, data, offsets_from_counts([len(v) for v in classes.values()]), list(classes))
    return out


def load_mini_imagenet(split: str, root: str | os.PathLike | None = None, *, size: int = DEFAULT_SIZE) -> ClassSplit:
    """Load ``train|val|test`` as uint8 RGB ``[M, 3, S, S]`` from the store.

    Usage: ``load_mini_imagenet("test", "/tmp/fewshot").num_classes`` -> ``20``.
    """
    if split not in SPLITS:
        raise DataError(f"unknown {NAME} split '{split}': choose one of {', '.join(SPLITS)}")
    path = store_path(NAME, root, size)
    cmd = f"fewshot prepare {NAME} --source DIR --root {path.parent.parent}" + (f" --size {size}" if size != DEFAULT_SIZE else "")
    if not path.is_file():
        raise DataError(f"no {NAME} store at {path}: run `{cmd}` (DIR holds images/ and the Ravi CSVs)")
    with Store(path, fix_hint=f"run `{cmd} --force` to rebuild it") as store:
        part = store.part(split)
    return ClassSplit(torch.from_numpy(part.images), torch.from_numpy(part.class_offsets), part.class_names,
                      name=f"{NAME}/{split}", meta={"dataset": NAME, "split": split, "size": size})

"""What every mini-ImageNet reader shares: the Ravi split (names, counts, CSV md5s), CSV parsing,
decoding.

A reader turns one distribution format into a :class:`SourceData`: per split, an ordered mapping
wnid -> the class's images, either a uint8 ``[n, 84, 84, 3]`` array (pickle/HDF5 formats) or a list
of image files to decode (JPEG formats). ``build.py`` checks it and writes the store.

Usage::

    table = read_split_csv("val.csv", MD5["val.csv"])        # {wnid: [filenames]}, 16 classes x 600
    chw = decode_image(Path("n0185567200000003.jpg").read_bytes(), 84)   # uint8 [3, 84, 84]
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Union

import numpy as np
from PIL import Image

from ..download import md5_file
from ..errors import DataError
from ..preprocessing import Preprocessing

NAME = "mini-imagenet"
SPLITS = ("train", "val", "test")
DEFAULT_SIZE = 84
IMAGE_SHAPE = (84, 84, 3)  # every array format stores HWC uint8 at this size
MD5 = {
    "train.csv": "9525e1538f67719f18f1936bf8d0782d",
    "val.csv": "ce315ce99b41fbf84fa6acd69315d918",
    "test.csv": "5b89df877c6cbe5d291e43118a2a9591",
}
# split -> (classes, images per class) of the Ravi split.
EXPECTED_COUNTS = {"train": (64, 600), "val": (16, 600), "test": (20, 600)}
WNID = re.compile(r"^n\d{8}$")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# The 100 wnids of the Ravi & Larochelle split (twitter/meta-learning-lstm data/miniImagenet/*.csv),
# sorted.
RAVI_CLASSES: dict[str, tuple[str, ...]] = {
    "train": (
        "n01532829", "n01558993", "n01704323", "n01749939", "n01770081", "n01843383", "n01910747",
        "n02074367", "n02089867", "n02091831", "n02101006", "n02105505", "n02108089", "n02108551",
        "n02108915", "n02111277", "n02113712", "n02120079", "n02165456", "n02457408", "n02606052",
        "n02687172", "n02747177", "n02795169", "n02823428", "n02966193", "n03017168", "n03047690",
        "n03062245", "n03207743", "n03220513", "n03337140", "n03347037", "n03400231", "n03476684",
        "n03527444", "n03676483", "n03838899", "n03854065", "n03888605", "n03908618", "n03924679",
        "n03998194", "n04067472", "n04243546", "n04251144", "n04258138", "n04275548", "n04296562",
        "n04389033", "n04435653", "n04443257", "n04509417", "n04515003", "n04596742", "n04604644",
        "n04612504", "n06794110", "n07584110", "n07697537", "n07747607", "n09246464", "n13054560",
        "n13133613",
    ),
    "val": (
        "n01855672", "n02091244", "n02114548", "n02138441", "n02174001", "n02950826", "n02971356",
        "n02981792", "n03075370", "n03417042", "n03535780", "n03584254", "n03770439", "n03773504",
        "n03980874", "n09256479",
    ),
    "test": (
        "n01930112", "n01981276", "n02099601", "n02110063", "n02110341", "n02116738", "n02129165",
        "n02219486", "n02443484", "n02871525", "n03127925", "n03146219", "n03272010", "n03544143",
        "n03775546", "n04146614", "n04149813", "n04418357", "n04522168", "n07613480",
    ),
}

ClassImages = Union[np.ndarray, "list[Path]"]


@dataclass
class SourceData:
    """One source, read: ``splits[split][wnid]`` is a uint8 ``[n, 84, 84, 3]`` array or a list of
    image files.

    ``format`` names the detected layout (see ``detect.FORMATS``); ``location`` is the folder read.
    """

    format: str
    location: Path
    splits: Mapping[str, Mapping[str, ClassImages]] = field(default_factory=dict)


def image_files(folder: Path) -> list[Path]:
    """The image files (``.jpg``/``.jpeg``/``.png``, any case) directly in ``folder``, sorted;
    hidden files skipped."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def find_split_csvs(folders: list[Path]) -> dict[str, Path]:
    """``{split: path}`` of the Ravi CSVs, from the first of ``folders`` (or its ``splits/ravi``)
    holding ``train.csv``.
    """
    candidates = [d for f in folders for d in (f, f / "splits" / "ravi")]
    for d in candidates:
        if (d / "train.csv").is_file() or (d / "val.csv").is_file() or (d / "test.csv").is_file():
            for split in SPLITS:
                if not (d / f"{split}.csv").is_file():
                    raise DataError(
                        f"{d} has no {split}.csv: put all three Ravi split CSVs (train.csv, "
                        "val.csv, "
                        "test.csv) there")
            return {split: d / f"{split}.csv" for split in SPLITS}
    where = " or ".join(str(d) for d in candidates)
    raise DataError(
        f"no Ravi split CSVs (train.csv, val.csv, test.csv) in {where}: copy them there from "
        "twitter/meta-learning-lstm data/miniImagenet/ or pass --splits DIR")


def read_split_csv(path: str | os.PathLike, expected_md5: str | None = None) -> dict[str,
                                                                                     list[str]]:
    """Parse a Ravi CSV into ``{label: [filenames]}`` (labels sorted, files sorted), checking its
    md5."""
    path = Path(path)
    if expected_md5 is not None:
        got = md5_file(path)
        if got != expected_md5:
            raise DataError(
                f"{path} has md5 {got}, expected {expected_md5}: use the original Ravi split file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path} ({exc}): use the original Ravi split file") from exc
    if not rows or [c.strip() for c in rows[0]] != ["filename", "label"]:
        raise DataError(
            f"{path} must start with the header 'filename,label': use the original Ravi split file")
    classes: dict[str, list[str]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or not row[0] or not row[1] or "/" in row[0] or "\\" in row[0]:
            raise DataError(f"{path}:{n}: expected 'filename,label', got {','.join(row)!r}: "
                            "use the original Ravi split file")
        classes.setdefault(row[1], []).append(row[0])
    return {label: sorted(files) for label, files in sorted(classes.items())}


def resize_rgb(im: Image.Image, size: int) -> Image.Image:
    """``im`` as RGB, resized to ``size`` x ``size`` with Lanczos (antialiased) if it is not
    already."""
    rgb = im.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    return rgb


def decode_image(data: bytes, size: int, what: str = "image") -> np.ndarray:
    """Decode an image file into uint8 RGB ``[3, size, size]`` (Lanczos resize if needed).

    Usage: ``decode_image(Path("x.jpg").read_bytes(), 84)``.
    """
    return preprocessing(size).pixels(data, what=what, fix="the data is corrupt: replace it",
                                      bomb_fix="the file is corrupt or was tampered with: replace "
                                               "it with the original")


def preprocessing(size: int = DEFAULT_SIZE) -> Preprocessing:
    """How the store turns an image into pixels: RGB, Lanczos (anti-aliased) resize to ``size``, not
    inverted."""
    return Preprocessing(size=size, channels=3, invert=False, interpolation="lanczos")


decode_jpeg = decode_image  # the name before other formats were read


def decode_file(path: Path, size: int) -> np.ndarray:
    """Read and decode one image file (a top-level function, so process pools can run it).

    Usage: ``decode_file(Path("images/n0153282900000005.jpg"), 84).shape`` -> ``(3, 84, 84)``.
    """
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read {path}: {exc.strerror or exc}; check its permissions or replace "
            "it") from exc
    return decode_image(blob, size, what=str(path))


def check_array_images(images: object, what: str) -> np.ndarray:
    """``images`` if it is uint8 ``[n, 84, 84, 3]``, else a DataError saying what it is."""
    if (not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4
            or images.shape[1:] != IMAGE_SHAPE):
        got = f"{images.dtype} {list(images.shape)}" if isinstance(images,
                                                                   np.ndarray) else type(
                                                                       images).__name__
        raise DataError(
            f"{what} is {got}, expected uint8 [N, 84, 84, 3] (mini-ImageNet at 84x84 RGB): "
            "the file is not mini-ImageNet or was altered; get the original")
    return images

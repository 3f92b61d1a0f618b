"""Format 5, the builder: mini-ImageNet from a full ImageNet (ILSVRC-2012) train tree plus the Ravi
CSVs.

Input: ``train/<wnid>/<wnid>_<n>.JPEG`` (or the ``<wnid>/`` folders directly) and the three Ravi
CSVs (beside ``train/``, in ``splits/ravi/``, or ``splits_dir``; publicly in
twitter/meta-learning-lstm ``data/miniImagenet/``).

**Filename convention.** A Ravi filename ``<wnid><8 digits>.jpg`` names the ``k``-th image (1-based,
``k`` = the 8-digit number) of that wnid's ILSVRC-2012 training images sorted by the *numeric* id
``<n>`` of ``<wnid>_<n>.JPEG`` (so ``_9`` before ``_10``). This is what the public generator
(yaoyao-liu/mini-imagenet-tools ``mini_imagenet_generator.py``) does; the original Vinyals/Ravi
extraction script was never published, so it is the community convention, not a verified ground
truth. Numbers run 1..1300 in the real CSVs (ILSVRC classes have 732..1300 training images).

**Resizing.** The whole image (no crop, aspect ratio not kept, as every reference generator does)
is resized to 84x84 with PIL's Lanczos filter (``Image.LANCZOS``, the old ``Image.ANTIALIAS``).
yaoyao-liu's script uses OpenCV ``INTER_AREA`` instead: pixels differ slightly between the two.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import DataError
from .common import WNID, SourceData
from .ravi import read_csv_tables

ILSVRC_FILE = re.compile(r"^(n\d{8})_(\d+)\.jpe?g$", re.IGNORECASE)
RAVI_FILE = re.compile(r"^(n\d{8})(\d{8})\.jpg$")


def class_root(folder: Path) -> Path:
    """The folder holding the ``<wnid>/`` class folders: ``folder/train`` if present, else
    ``folder``."""
    return folder / "train" if (folder / "train").is_dir() else folder


def sorted_class_files(class_dir: Path) -> list[Path]:
    """A class's ILSVRC training images, ordered by the numeric id in ``<wnid>_<n>.JPEG``."""
    found = []
    for p in class_dir.iterdir():
        m = ILSVRC_FILE.match(p.name)
        if m and m.group(1) == class_dir.name and p.is_file():
            found.append((int(m.group(2)), p))
    return [p for _, p in sorted(found)]


def read_ilsvrc(folder: Path, *, strict: bool = True, splits_dir: Path | None = None) -> SourceData:
    """Map every Ravi CSV entry to its ILSVRC training file (see the module docstring for the
    convention)."""
    root = class_root(folder)
    tables = read_csv_tables(([splits_dir] if splits_dir is not None else []) + [folder], strict)
    needed = [(split, wnid) for split, classes in tables.items() for wnid in classes]
    for split, wnid in needed:
        if not WNID.match(wnid):
            raise DataError(
                f"{split}.csv label '{wnid}' is not a WordNet id: use the original Ravi split file")
    absent = [(split, wnid) for split, wnid in needed if not (root / wnid).is_dir()]
    if absent:
        raise DataError(
            f"{root} lacks {len(absent)} of the {len(needed)} class folders the CSVs need "
            f"(e.g. {absent[0][1]}/ for {absent[0][0]}.csv): extract the full "
            "ILSVRC-2012 train set (one "
            "folder per wnid)")
    splits: dict[str, dict] = {}
    for split, classes in tables.items():
        out = {}
        for wnid, names in classes.items():
            class_dir = root / wnid
            files = sorted_class_files(class_dir)
            picked = []
            for name in names:
                m = RAVI_FILE.match(name)
                if not m or m.group(1) != wnid:
                    raise DataError(
                        f"{split}.csv entry '{name}' is not '<wnid><8 digits>.jpg' of class "
                        f"{wnid}: "
                        "use the original Ravi split file")
                k = int(m.group(2))
                if not 1 <= k <= len(files):
                    raise DataError(
                        f"{split}.csv entry '{name}' is image {k} of {wnid}, but {class_dir} has "
                        f"{len(files)} <wnid>_<n>.JPEG files: "
                        "the ILSVRC-2012 train set is incomplete; extract all of it")
                picked.append(files[k - 1])
            out[wnid] = picked
        splits[split] = out
    return SourceData("ilsvrc", folder, splits)

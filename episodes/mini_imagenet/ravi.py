"""Format 1, Ravi & Larochelle: ``images/<wnid><8 digits>.jpg`` + ``{train,val,test}.csv``, or
``{train,val,test}/<wnid>/*.jpg``.

The CSVs (``filename,label``) may sit beside ``images/``, in ``splits/ravi/``, or in ``splits_dir``;
with ``strict`` their md5s must be the published ones. The folder variant needs no CSV: each split
folder holds one sub-folder per wnid. Images within a class are in filename order.

Usage::

    data = read_ravi_csv(Path("/data/mini-imagenet"), strict=True)      # images/ + CSVs
    data = read_ravi_folders(Path("/data/mini-imagenet"))  # train/ val/ test/ class folders
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .common import MD5, SPLITS, WNID, SourceData, find_split_csvs, image_files, read_split_csv


def read_csv_tables(folders: list[Path], strict: bool) -> dict[str, dict[str, list[str]]]:
    """``{split: {wnid: [filenames]}}`` from the Ravi CSVs found in ``folders`` (md5-checked if
    ``strict``)."""
    paths = find_split_csvs(folders)
    return {split: read_split_csv(paths[split], MD5[f"{split}.csv"] if strict else None)
            for split in SPLITS}


def read_ravi_csv(folder: Path, *, strict: bool = True,
                  splits_dir: Path | None = None) -> SourceData:
    """Read ``folder/images`` as listed by the Ravi CSVs; every listed image must exist."""
    tables = read_csv_tables(([splits_dir] if splits_dir is not None else []) + [folder], strict)
    images_dir = folder / "images"
    missing = [f for classes in tables.values() for files in classes.values() for f in files
               if not (images_dir / f).is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} images listed in the CSVs are missing from {images_dir} (e.g. "
            f"{missing[0]}): "
            "copy all images there")
    splits = {split: {wnid: [images_dir / f for f in files] for wnid, files in classes.items()}
              for split, classes in tables.items()}
    return SourceData("ravi-csv", folder, splits)


def read_ravi_folders(folder: Path) -> SourceData:
    """Read ``folder/{train,val,test}/<wnid>/*.jpg`` (one sub-folder per class, named by its
    wnid)."""
    splits: dict[str, dict] = {}
    for split in SPLITS:
        d = folder / split
        if not d.is_dir():
            raise DataError(
                f"{folder} has no {split}/ folder: the class-folder layout needs train/, val/ and "
                "test/, "
                "each with one <wnid>/ folder of images per class")
        classes = {}
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not WNID.match(sub.name):
                raise DataError(
                    f"{sub} is not named by a WordNet id (like n01532829): each class folder must "
                    "be its "
                    "wnid")
            classes[sub.name] = image_files(sub)
        splits[split] = classes
    return SourceData("ravi-folders", folder, splits)

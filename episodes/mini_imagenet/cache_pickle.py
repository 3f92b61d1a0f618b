"""Format 2, the "cache" pickles of learn2learn and Ren et al.:
``mini-imagenet-cache-{train,val|validation,test}.pkl``.

Each is a dict ``{"image_data": uint8 [N, 84, 84, 3], "class_dict": {wnid: [indices into
image_data]}}``. They are read with the restricted unpickler (:mod:`episodes.safe_pickle`): arrays,
dicts, lists, strings and numbers only. Images within a class keep the order of ``class_dict``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..safe_pickle import load_data_pickle
from .common import SPLITS, SourceData, check_array_images

PREFIX = "mini-imagenet-cache-"
# split -> accepted file stems (learn2learn writes "validation", Ren et al.'s copies often "val").
FILE_NAMES = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


def split_file(folder: Path, split: str) -> Path:
    """The cache pickle of ``split`` in ``folder``; a DataError if it is missing or two names are
    present."""
    found = [folder / f"{PREFIX}{stem}.pkl" for stem in FILE_NAMES[split]
             if (folder / f"{PREFIX}{stem}.pkl").is_file()]
    names = " or ".join(f"{PREFIX}{stem}.pkl" for stem in FILE_NAMES[split])
    if not found:
        raise DataError(
            f"{folder} has no {names}: bring all three cache pickles (train, val/validation, test)")
    if len(found) > 1:
        raise DataError(
            f"{folder} has both {found[0].name} and {found[1].name}: keep only one of them")
    return found[0]


def read_cache_pickles(folder: Path) -> SourceData:
    """Read the three cache pickles (safely) into per-class arrays.

    Usage: ``read_cache_pickles(Path("/data/l2l")).splits["train"]["n01532829"].shape`` -> ``(600,
    84, 84, 3)``.
    """
    splits = {}
    for split in SPLITS:
        path = split_file(folder, split)
        blob = load_data_pickle(path)
        if not isinstance(blob, dict) or "image_data" not in blob or "class_dict" not in blob:
            keys = sorted(map(str, blob)) if isinstance(blob, dict) else type(blob).__name__
            raise DataError(
                f"{path} holds {keys}, expected a dict with 'image_data' and 'class_dict': "
                "it is not a mini-ImageNet cache pickle")
        images = check_array_images(blob["image_data"], f"{path} image_data")
        class_dict = blob["class_dict"]
        if not isinstance(class_dict, dict):
            raise DataError(
                f"{path} class_dict is a {type(class_dict).__name__}, expected {{wnid: "
                "[indices]}: "
                "the file is corrupt; get the original")
        classes = {}
        for wnid in sorted(class_dict):
            try:
                idx = np.asarray(class_dict[wnid], dtype=np.int64).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise DataError(f"{path} class_dict['{wnid}'] is not a list of indices ({exc}): "
                                "the file is corrupt; get the original") from exc
            if idx.size and (idx.min() < 0 or idx.max() >= len(images)):
                raise DataError(
                    f"{path} class_dict['{wnid}'] indexes outside image_data (N={len(images)}): "
                    "the file is corrupt; get the original")
            classes[str(wnid)] = images[idx]
        splits[split] = classes
    return SourceData("cache-pickle", folder, splits)

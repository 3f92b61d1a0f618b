"""Format 4, torchmeta: ``{train,val,test}_data.hdf5`` (group ``datasets``, one uint8 ``[600, 84,
84, 3]`` dataset per wnid) with ``{train,val,test}_labels.json`` (the list of wnids). Read with
h5py: no code runs.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py

from ..errors import DataError
from .common import SPLITS, SourceData, check_array_images


def read_torchmeta(folder: Path) -> SourceData:
    """Read torchmeta's per-split HDF5 files; the JSON label list must name exactly the HDF5's
    classes.

    Usage: ``read_torchmeta(Path("/data/miniimagenet")).splits["train"]["n01532829"].shape`` ->
    ``(600, 84, 84, 3)``.
    """
    splits = {}
    for split in SPLITS:
        data_path, labels_path = folder / f"{split}_data.hdf5", folder / f"{split}_labels.json"
        for p in (data_path, labels_path):
            if not p.is_file():
                raise DataError(
                    f"{folder} has no {p.name}: bring torchmeta's {{train,val,test}}_data.hdf5 and "
                    "{train,val,test}_labels.json")
        try:
            labels = json.loads(labels_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{labels_path} is not readable JSON ({exc}): replace it") from exc
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError(f"{labels_path} must be a JSON list of wnids: replace it")
        try:
            with h5py.File(data_path, "r") as f:
                if "datasets" not in f or not isinstance(f["datasets"], h5py.Group):
                    raise DataError(f"{data_path} has no group 'datasets': "
                                    "it is not a torchmeta mini-ImageNet file; bring the original")
                group = f["datasets"]
                if sorted(group) != sorted(labels):
                    extra = sorted(set(group) ^ set(labels))
                    raise DataError(
                        f"{data_path} classes and {labels_path.name} disagree (e.g. {extra[0]}): "
                        "bring matching files of one torchmeta download")
                classes = {}
                for wnid in sorted(labels):
                    item = group[wnid]
                    if not isinstance(item, h5py.Dataset):
                        raise DataError(f"{data_path} datasets/{wnid} is not a dataset: "
                                        "the file is corrupt; get the original")
                    classes[wnid] = check_array_images(item[()], f"{data_path} datasets/{wnid}")
        except OSError as exc:
            raise DataError(f"{data_path} is not a readable HDF5 file ({exc}): replace it") from exc
        splits[split] = classes
    return SourceData("torchmeta", folder, splits)

"""Format 3, MetaOptNet / FewShotWithoutForgetting:
``miniImageNet_category_split_{train_phase_train,val,test}.pickle``.

Python 2 pickles (read with ``encoding="latin1"`` through the restricted unpickler) of a dict
``{"data": uint8 [N, 84, 84, 3], "labels": [int per image], "catname2label": {wnid: int}}``.
``train_phase_train`` holds the 64 training classes; the ``train_phase_val``/``train_phase_test``
files (extra images of those classes, for 64-way classification) are not part of the Ravi split and
are ignored. Classes are the labels present in ``labels``, named by ``catname2label`` (wnids in the
files we know of; a non-wnid name fails the strict Ravi check with the name shown). Images within a
class keep the file's order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..safe_pickle import load_data_pickle
from .common import SPLITS, SourceData, check_array_images

PREFIX = "miniImageNet_category_split_"
FILE_NAMES = {"train": f"{PREFIX}train_phase_train.pickle", "val": f"{PREFIX}val.pickle",
              "test": f"{PREFIX}test.pickle"}


def read_metaopt_pickles(folder: Path) -> SourceData:
    """Read the three MetaOptNet pickles (safely, latin1) into per-class arrays named by
    ``catname2label``."""
    splits = {}
    for split in SPLITS:
        path = folder / FILE_NAMES[split]
        if not path.is_file():
            raise DataError(
                f"{folder} has no {FILE_NAMES[split]}: bring the three MetaOptNet pickles "
                f"({', '.join(FILE_NAMES.values())})")
        blob = load_data_pickle(path, encoding="latin1")
        if not isinstance(blob, dict) or not {"data", "labels", "catname2label"} <= set(blob):
            keys = sorted(map(str, blob)) if isinstance(blob, dict) else type(blob).__name__
            raise DataError(
                f"{path} holds {keys}, expected a dict with 'data', 'labels' and 'catname2label': "
                "it is not a MetaOptNet mini-ImageNet pickle")
        images = check_array_images(blob["data"], f"{path} data")
        try:
            labels = np.asarray(blob["labels"], dtype=np.int64).reshape(-1)
            names = {int(v): str(k) for k, v in blob["catname2label"].items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise DataError(
                f"{path} labels/catname2label are not integers per image / a {{wnid: int}} dict "
                f"({exc}): "
                "the file is corrupt; get the original") from exc
        if len(labels) != len(images):
            raise DataError(f"{path} has {len(images)} images but {len(labels)} labels: "
                            "the file is corrupt; get the original")
        if len(names) != len(blob["catname2label"]):
            raise DataError(f"{path} catname2label maps two classes to one label: "
                            "the file is corrupt; get the original")
        unknown = sorted(set(labels.tolist()) - set(names))
        if unknown:
            raise DataError(f"{path} has label {unknown[0]}, which catname2label does not name: "
                            "the file is corrupt; get the original")
        classes = {}
        present = set(labels.tolist())  # catname2label may name more classes than the file holds
        for label, wnid in sorted(names.items(), key=lambda kv: kv[1]):
            if label in present:
                classes[wnid] = images[np.flatnonzero(labels == label)]
        splits[split] = classes
    return SourceData("metaopt-pickle", folder, splits)

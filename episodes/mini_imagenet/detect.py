"""Which mini-ImageNet distribution format a ``--source`` folder (or a file in it) holds.

Each layout is recognised by its own file names; a folder matching none, or more than one, is a
DataError listing what was found and what each format needs.

=================  =================================================================================
``ravi-csv``       ``images/`` (``<wnid><8 digits>.jpg``) + ``train.csv``/``val.csv``/``test.csv``
``ravi-folders``   ``train/``, ``val/``, ``test/``, each with ``<wnid>/*.jpg`` (Ravi file names)
``cache-pickle``   ``mini-imagenet-cache-{train,val|validation,test}.pkl`` (learn2learn, Ren et al.)
``metaopt-pickle`` ``miniImageNet_category_split_{train_phase_train,val,test}.pickle`` (MetaOptNet)
``torchmeta``      ``{train,val,test}_data.hdf5`` + ``{train,val,test}_labels.json``
``ilsvrc``         ILSVRC-2012 ``train/<wnid>/<wnid>_<n>.JPEG`` (or the ``<wnid>/`` folders) + Ravi
CSVs =================
=================================================================================

Usage: ``detect_format("/data/mini-imagenet")`` -> ``("cache-pickle", Path("/data/mini-imagenet"))``
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .cache_pickle import PREFIX as CACHE_PREFIX
from .common import SPLITS, WNID
from .ilsvrc import ILSVRC_FILE
from .metaopt_pickle import PREFIX as METAOPT_PREFIX

FORMATS: dict[str, str] = {
    "ravi-csv": "images/<wnid><8 digits>.jpg with train.csv, val.csv, test.csv (Ravi & Larochelle)",
    "ravi-folders": "train/, val/, test/ each holding <wnid>/*.jpg (Ravi & Larochelle, one folder "
                    "per class)",
    "cache-pickle": "mini-imagenet-cache-train.pkl, -val.pkl (or -validation.pkl), -test.pkl "
                    "(learn2learn / Ren et al.)",
    "metaopt-pickle": (
        "miniImageNet_category_split_train_phase_train.pickle, _val.pickle, _test.pickle "
        "(MetaOptNet / FewShotWithoutForgetting)"),
    "torchmeta": "train_data.hdf5, val_data.hdf5, test_data.hdf5 with train_labels.json, "
                 "val_labels.json, "
                 "test_labels.json (torchmeta)",
    "ilsvrc": "an ILSVRC-2012 train tree train/<wnid>/<wnid>_<n>.JPEG plus the Ravi CSVs (builds "
              "mini-ImageNet)",
}


def _first_image_name(class_dir: Path) -> str | None:
    with os.scandir(class_dir) as it:
        for entry in it:
            if entry.is_file() and not entry.name.startswith("."):
                return entry.name
    return None


def _class_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and WNID.match(p.name))
    except OSError:
        return []


def _tree_kind(folder: Path) -> str | None:
    """'ilsvrc' if the first ``<wnid>/`` folder under ``folder`` holds ``<wnid>_<n>.JPEG``, 'images'
    if other files, else None."""
    for d in _class_dirs(folder):
        name = _first_image_name(d)
        if name is not None:
            return "ilsvrc" if ILSVRC_FILE.match(name) else "images"
    return None


def scan(folder: Path) -> dict[str, list[str]]:
    """``{format: [the files/folders that show it]}`` for every layout present in ``folder``.

    Usage: ``scan(Path("/data/x"))`` -> ``{"torchmeta": ["train_data.hdf5", ...]}``.
    """
    names = sorted(p.name for p in folder.iterdir())
    found: dict[str, list[str]] = {}
    if (folder / "images").is_dir():
        found["ravi-csv"] = ["images/"] + [n for n in names
                                           if n in ("train.csv", "val.csv", "test.csv")]
    split_dirs = [s for s in SPLITS if (folder / s).is_dir()]
    if split_dirs:
        kinds = {s: _tree_kind(folder / s) for s in split_dirs}
        if kinds.get("train") == "ilsvrc":
            found["ilsvrc"] = ["train/<wnid>/<wnid>_<n>.JPEG"]
        elif any(k == "images" for k in kinds.values()):
            found["ravi-folders"] = [f"{s}/<wnid>/" for s, k in kinds.items() if k == "images"]
    elif _tree_kind(folder) == "ilsvrc":
        found["ilsvrc"] = ["<wnid>/<wnid>_<n>.JPEG"]
    cache = [n for n in names if n.startswith(CACHE_PREFIX) and n.endswith(".pkl")]
    if cache:
        found["cache-pickle"] = cache
    metaopt = [n for n in names if n.startswith(METAOPT_PREFIX) and n.endswith(".pickle")]
    if metaopt:
        found["metaopt-pickle"] = metaopt
    torchmeta = [n for n in names
                 if n in {f"{s}_{kind}" for s in SPLITS for kind in ("data.hdf5", "labels.json")}]
    if torchmeta:
        found["torchmeta"] = torchmeta
    return found


def detect_format(source: str | os.PathLike) -> tuple[str, Path]:
    """``(format, folder)`` of a mini-ImageNet source; a file stands for the folder it is in."""
    path = Path(source).expanduser()
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise DataError(
            f"--source {path} is not a folder or a file: pass the folder holding your "
            "mini-ImageNet files")
    try:
        found = scan(path)
    except OSError as exc:
        raise DataError(f"cannot list {path}: {exc.strerror or exc}; "
                        "check its permissions or pass another --source") from exc
    needs = "; ".join(f"{name}: {what}" for name, what in FORMATS.items())
    if len(found) == 1:
        return next(iter(found)), path
    if not found:
        csvs = [d for d in (path, path / "splits" / "ravi") if (d / "train.csv").is_file()]
        has = f" (it has the Ravi CSVs in {csvs[0]} but no images)" if csvs else ""
        raise DataError(f"{path} holds no known mini-ImageNet format{has}; bring one of - {needs}")
    seen = "; ".join(f"{name} ({', '.join(files)})" for name, files in found.items())
    raise DataError(
        f"{path} mixes several mini-ImageNet formats: {seen}; point --source at a folder holding "
        "only one "
        "of them")

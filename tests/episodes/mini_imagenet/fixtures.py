"""Tiny, format-exact mini-ImageNet sources in all five distribution formats, from one seeded image
set.

No real mini-ImageNet image can be had offline, so each writer reproduces a format's real layout
(file names, CSV columns, pickle keys and protocol, HDF5 groups, wnid naming, ILSVRC numbering)
around a few 84x84 images of the first real Ravi wnids. Images are smooth (upscaled 6x6 noise) so
JPEG round trips stay within a few grey levels.

Usage::

    fx = make_fixture(seed=0)                      # 3/2/2 classes x 5 images
    write_cache_pickles(tmp_path / "l2l", fx)  # then prepare_mini_imagenet(..., **fx.prepare_kw)
"""
from __future__ import annotations

import csv
import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from episodes.mini_imagenet import RAVI_CLASSES, SPLITS

COUNTS = {"train": (3, 5), "val": (2, 5), "test": (2, 5)}  # split -> (classes, images per class)
JPEG_QUALITY = 95


@dataclass
class Fixture:
    """The truth every source is written from: ``images[split][wnid]`` uint8 ``[n, 84, 84, 3]`` and
    the 1-based ILSVRC indices (``<wnid><8 digits>.jpg``) of those images, ascending."""

    images: dict[str, dict[str, np.ndarray]]
    indices: dict[str, dict[str, list[int]]]
    seed: int

    @property
    def prepare_kw(self) -> dict:
        """Keywords for ``prepare_mini_imagenet`` on this non-official data."""
        return {"strict": False, "expected_counts": COUNTS, "quiet": True, "workers": 1}

    def ravi_name(self, wnid: str, k: int) -> str:
        return f"{wnid}{k:08d}.jpg"


def _smooth_image(rng: np.random.Generator, size: tuple[int, int] = (84, 84)) -> np.ndarray:
    low = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(low).resize(size, Image.BICUBIC), dtype=np.uint8)


def make_fixture(seed: int = 0, counts: dict[str, tuple[int, int]] = COUNTS) -> Fixture:
    """Seeded images for the first real wnids of each Ravi split, and distinct ILSVRC indices per
    class.

    Indices are drawn from 1..3n so they skip numbers and cross 9 -> 10 (numeric vs text order
    matters).
    """
    rng = np.random.default_rng(seed)
    images: dict[str, dict[str, np.ndarray]] = {}
    indices: dict[str, dict[str, list[int]]] = {}
    for split in SPLITS:
        n_classes, per = counts[split]
        images[split], indices[split] = {}, {}
        for wnid in RAVI_CLASSES[split][:n_classes]:
            images[split][wnid] = np.stack([_smooth_image(rng) for _ in range(per)])
            indices[split][wnid] = sorted(int(k)
                                          for k in rng.choice(np.arange(1, 3 * per + 1), size=per,
                                                                     replace=False))
    return Fixture(images, indices, seed)


def _jpeg(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="JPEG", quality=JPEG_QUALITY)


def write_csvs(folder: Path, fx: Fixture) -> None:
    """The Ravi CSVs, laid out as the real ones: header ``filename,label``, rows grouped by class,
    sorted."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with open(folder / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["filename", "label"])
            for wnid, ks in fx.indices[split].items():
                w.writerows([fx.ravi_name(wnid, k), wnid] for k in ks)


def write_ravi_csv(folder: Path, fx: Fixture) -> Path:
    """Format 1a: ``images/<wnid><8 digits>.jpg`` plus ``train.csv``/``val.csv``/``test.csv``."""
    write_csvs(folder, fx)
    for split in SPLITS:
        for wnid, ims in fx.images[split].items():
            for k, im in zip(fx.indices[split][wnid], ims):
                _jpeg(folder / "images" / fx.ravi_name(wnid, k), im)
    return folder


def write_ravi_folders(folder: Path, fx: Fixture) -> Path:
    """Format 1b: ``{train,val,test}/<wnid>/<wnid><8 digits>.jpg``."""
    for split in SPLITS:
        for wnid, ims in fx.images[split].items():
            for k, im in zip(fx.indices[split][wnid], ims):
                _jpeg(folder / split / wnid / fx.ravi_name(wnid, k), im)
    return folder


def _scatter(fx: Fixture, split: str, rng: np.random.Generator,
             ascending: bool = False) -> tuple[np.ndarray, dict[str, list[int]]]:
    """All images of a split in a shuffled order, and per class the positions of its images (class
    order kept; ``ascending``: a class's images also appear in file order, as a per-image label list
    implies)."""
    classes = fx.images[split]
    total = sum(len(v) for v in classes.values())
    order = rng.permutation(total)
    data = np.empty((total, 84, 84, 3), dtype=np.uint8)
    where, i = {}, 0
    for wnid, ims in classes.items():
        picked = order[i:i + len(ims)]
        where[wnid] = [int(p) for p in (np.sort(picked) if ascending else picked)]
        data[where[wnid]] = ims
        i += len(ims)
    return data, where


def write_cache_pickles(folder: Path, fx: Fixture, val_name: str = "validation",
                        protocol: int = 4) -> Path:
    """Format 2: ``mini-imagenet-cache-{train,<val_name>,test}.pkl`` = ``{"image_data",
    "class_dict"}``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(fx.seed + 1)
    for split, stem in zip(SPLITS, ("train", val_name, "test")):
        data, where = _scatter(fx, split, rng)
        with open(folder / f"mini-imagenet-cache-{stem}.pkl", "wb") as f:
            pickle.dump({"image_data": data, "class_dict": where}, f, protocol=protocol)
    return folder


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes what Python 2's cPickle (protocol 2) wrote: byte strings as ``BINSTRING``, not
    ``_codecs.encode``; ASCII ``str`` as ``BINSTRING`` too (Python 2 ``str``), and NumPy globals
    under ``numpy.core``."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _py2_str(self, data: bytes) -> None:
        n = len(data)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + data)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + data)

    def save_bytes(self, obj: bytes) -> None:
        self._py2_str(obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self._py2_str(obj.encode("ascii"))
        self.memoize(obj)

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")  # type: ignore[attr-defined]
        self.write(pickle.GLOBAL + module.encode() + b"\n" + (name or obj.__qualname__).encode()
                   + b"\n")  # type: ignore[attr-defined]
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str
    dispatch[type] = save_global


def py2_pickle_bytes(obj: object) -> bytes:
    """``obj`` pickled as Python 2.7 would (protocol 2); load it with ``encoding="latin1"``."""
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_metaopt_pickles(folder: Path, fx: Fixture) -> Path:
    """Format 3: ``miniImageNet_category_split_{train_phase_train,val,test}.pickle`` (Python 2
    pickles) of ``{"data", "labels", "catname2label"}``; labels count on across splits as in the
    real files (train 0.., val after train, test after val)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(fx.seed + 2)
    label = 0
    for split, stem in zip(SPLITS, ("train_phase_train", "val", "test")):
        data, where = _scatter(fx, split, rng, ascending=True)
        labels = np.empty(len(data), dtype=np.int64)
        catname2label = {}
        for wnid, positions in where.items():
            catname2label[wnid] = label
            labels[positions] = label
            label += 1
        blob = {"data": data, "labels": [int(x) for x in labels], "catname2label": catname2label}
        (folder / f"miniImageNet_category_split_{stem}.pickle").write_bytes(py2_pickle_bytes(blob))
    return folder


def write_torchmeta(folder: Path, fx: Fixture) -> Path:
    """Format 4: ``{split}_data.hdf5`` (group ``datasets``, one ``[n, 84, 84, 3]`` uint8 per wnid) +
    ``{split}_labels.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with h5py.File(folder / f"{split}_data.hdf5", "w") as f:
            group = f.create_group("datasets")
            for wnid, ims in fx.images[split].items():
                group.create_dataset(wnid, data=ims)
        (folder / f"{split}_labels.json").write_text(json.dumps(list(fx.images[split])))
    return folder


def write_ilsvrc(folder: Path, fx: Fixture, extra: int = 4) -> Path:
    """Format 5: an ILSVRC-2012-style ``train/<wnid>/<wnid>_<n>.JPEG`` tree (non-square, larger
    images).

    Each class gets ``3n + extra`` files with random distinct numeric ids; the file at 1-based
    position ``k`` in numeric order holds the fixture image of Ravi index ``k`` (upscaled), the
    others are distractors. One class outside the split is added, as a full ILSVRC tree has 1000.
    """
    rng = np.random.default_rng(fx.seed + 3)
    for split in SPLITS:
        for wnid, ims in fx.images[split].items():
            per = len(ims)
            ids = sorted(int(n)
                         for n in rng.choice(np.arange(1, 20000), size=3 * per + extra,
                                             replace=False))
            chosen = dict(zip(fx.indices[split][wnid], ims))
            for pos, n in enumerate(ids, start=1):
                im = chosen.get(pos)
                big = (np.asarray(Image.fromarray(im).resize((126, 105), Image.LANCZOS))
                       if im is not None
                       else _smooth_image(rng, (100, 120)))
                _jpeg(folder / "train" / wnid / f"{wnid}_{n}.JPEG", big)
    _jpeg(folder / "train" / "n01440764" / "n01440764_18.JPEG", _smooth_image(rng, (90, 80)))
    return folder


WRITERS = {
    "ravi-csv": write_ravi_csv,
    "ravi-folders": write_ravi_folders,
    "cache-pickle": write_cache_pickles,
    "metaopt-pickle": write_metaopt_pickles,
    "torchmeta": write_torchmeta,
    "ilsvrc": write_ilsvrc,
}

"""MNIST and Fashion-MNIST: a hand-written idx(.gz) reader and the conversion into an HDF5 store.

The idx format: 2 zero bytes, a type code (0x08 uint8 ... 0x0E float64), the number of dims, then
each dim as a big-endian uint32, then the big-endian data. Stores
(``<root>/<dataset>/<dataset>-<size>.h5``) hold parts ``train`` (60000) and ``test`` (10000), uint8
``[M, 1, S, S]`` sorted by label, classes named by label (digits or Fashion-MNIST names).

Usage::

    images = read_idx("/data/mnist/train-images-idx3-ubyte.gz")        # uint8 [60000, 28, 28]
    prepare_mnist("mnist", source="~/Downloads/mnist", root="/tmp/fewshot")
    split = load_idx_split("fashion-mnist", "test", root="/tmp/fewshot")
"""
from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from PIL import Image

from .download import fetch
from .errors import DataError
from .paths import is_url, store_path
from .preprocessing import Preprocessing
from .store import Store, StoreWriter, offsets_from_counts
from .types import ClassSplit

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLITS = ("train", "test")
COUNTS = {"train": 60000, "test": 10000}


@dataclass(frozen=True)
class IdxDataset:
    """Where one idx dataset is published and what its classes are called."""

    name: str
    base_url: str
    md5: Mapping[str, str]  # of the published .gz files
    class_names: tuple[str, ...]


MNIST = IdxDataset(
    "mnist",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    tuple(str(d) for d in range(10)),
)
FASHION_MNIST = IdxDataset(
    "fashion-mnist",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
     "Ankle boot"),
)
IDX_DATASETS = {d.name: d for d in (MNIST, FASHION_MNIST)}


def parse_idx(raw: bytes, what: str = "idx data") -> np.ndarray:
    """Parse the bytes of an (uncompressed) idx file into a native-endian numpy array.

    Usage: ``parse_idx(gzip.decompress(blob))``.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{what} is not an idx file (bad magic number): use the original MNIST-format file")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise DataError(
            f"{what} has unknown idx type code 0x{code:02x}: use the original MNIST-format file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{what} is truncated (header cut short): re-download it")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[code])
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != need:
        raise DataError(
            f"{what} holds {len(raw) - header} data bytes, expected {need} for shape {dims}: it is "
            "truncated or corrupt, re-download it")
    return np.frombuffer(raw, dtype=dtype,
                         offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file, gzip-compressed (detected by its magic bytes) or raw.

    Usage: ``read_idx("t10k-labels-idx1-ubyte.gz")`` -> uint8 ``[10000]``.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path} not found: check --source") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; "
                        "check its permissions or download it again") from exc
    if blob[:2] == b"\x1f\x8b":
        try:
            blob = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{path} is not a valid gzip file (truncated or corrupt: {exc}): re-download "
                "it") from exc
    return parse_idx(blob, what=str(path))


def _find_local(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"neither {folder / (stem + '.gz')} nor {folder / stem} exists: point --source at the "
        "folder "
        "holding the idx files")


def _load_pair(images_path: Path, labels_path: Path, split: str,
               num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read and verify one split's images and labels (counts, 28x28 uint8, labels in range)."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    n = COUNTS[split]
    if images.dtype != np.uint8 or images.shape != (n, 28, 28):
        raise DataError(
            f"{images_path} holds {images.dtype} {images.shape}, expected uint8 ({n}, 28, 28): use "
            "the "
            f"original {split} images file")
    if labels.dtype != np.uint8 or labels.shape != (n,):
        raise DataError(
            f"{labels_path} holds {labels.dtype} {labels.shape}, expected uint8 ({n},): use the "
            "original "
            f"{split} labels file")
    if int(labels.max()) >= num_classes:
        raise DataError(
            f"{labels_path} has label {int(labels.max())}, expected 0..{num_classes - 1}: use the "
            "original "
            "labels file")
    return images, labels


def preprocessing(size: int = 28) -> Preprocessing:
    """How the store turns a digit into pixels: grayscale as stored (ink is already 255), Lanczos
    resize only when ``size`` is not the native 28."""
    return Preprocessing(size=size, channels=1, invert=False, interpolation="lanczos")


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if size == images.shape[-1]:
        return images
    prep = preprocessing(size)
    return np.stack([prep.pixels(Image.fromarray(im))[0] for im in images])


def prepare_mnist(
    dataset: str = "mnist",
    source: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    *,
    size: int = 28,
    force: bool = False,
    quiet: bool = False,
    md5: Mapping[str, str] | None = None,
) -> Path:
    """Build ``<root>/<dataset>/<dataset>-<size>.h5`` for ``mnist`` or ``fashion-mnist`` (no-op if
    it exists).

    ``source``: ``None`` downloads the published .gz files, a URL downloads from that base (md5
    checked; ``md5`` overrides entries), a folder reads local ``*-ubyte(.gz)`` files and verifies
    their content (magic, counts 60000/10000, 28x28, labels 0..9) instead of their md5. Usage:
    ``prepare_mnist("fashion-mnist", source="~/Downloads/fashion-mnist", root="/tmp/f")``.
    """
    spec = _spec(dataset)
    if isinstance(size, bool) or not isinstance(size,
                                                (int, np.integer)) or not 1 <= int(size) <= 1024:
        raise DataError(
            f"image size must be an integer in 1..1024, got {size!r}: pass e.g. --size 28")
    size = int(size)
    out = store_path(spec.name, root, size)
    if out.exists() and not force:
        return out
    paths: dict[str, tuple[Path, Path]] = {}
    if source is None or is_url(str(source)):
        table = {**spec.md5, **(md5 or {})}
        base = str(source) if source is not None else spec.base_url
        dest = out.parent
        for split, stems in FILES.items():
            img, lab = (fetch(base, f"{stem}.gz", dest, table[f"{stem}.gz"], quiet=quiet)
                        for stem in stems)
            paths[split] = (img, lab)
    else:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"--source {folder} is not a folder: pass the folder holding the {spec.name} idx "
                "files, or "
                "a URL")
        for split, (img_stem, lab_stem) in FILES.items():
            paths[split] = (_find_local(folder, img_stem), _find_local(folder, lab_stem))
    with StoreWriter(out, dataset=spec.name, size=size, inverted=False,
                     source=str(source or spec.base_url)) as writer:
        for split in SPLITS:
            images, labels = _load_pair(*paths[split], split, len(spec.class_names))
            order = np.argsort(labels, kind="stable")
            counts = np.bincount(labels, minlength=len(spec.class_names))
            data = _resize(images[order], size)[:, None]
            writer.add_part(split, np.ascontiguousarray(data), offsets_from_counts(counts),
                            spec.class_names)
    return out


def _spec(dataset: str) -> IdxDataset:
    if dataset not in IDX_DATASETS:
        raise DataError(f"unknown idx dataset '{dataset}': choose one of {', '.join(IDX_DATASETS)}")
    return IDX_DATASETS[dataset]


def load_idx_split(dataset: str, split: str, root: str | os.PathLike | None = None, *,
                   size: int = 28) -> ClassSplit:
    """Load ``train`` or ``test`` of ``mnist``/``fashion-mnist`` from its store as uint8 ``[M, 1, S,
    S]``.

    Usage: ``load_idx_split("mnist", "test", "/tmp/fewshot").num_classes`` -> ``10``.
    """
    spec = _spec(dataset)
    if split not in SPLITS:
        raise DataError(f"unknown {dataset} split '{split}': choose one of {', '.join(SPLITS)}")
    path = store_path(spec.name, root, size)
    cmd = f"fewshot prepare {spec.name} --root {path.parent.parent}" + (f" --size {size}" if size
                                                                        != 28 else "")
    if not path.is_file():
        raise DataError(
            f"no {spec.name} store at {path}: run `{cmd}` (add --source DIR for local idx files)")
    with Store(path, fix_hint=f"run `{cmd} --force` to rebuild it") as store:
        part = store.part(split)
    return ClassSplit(torch.from_numpy(part.images), torch.from_numpy(part.class_offsets),
                      part.class_names,
                      name=f"{spec.name}/{split}",
                      meta={"dataset": spec.name, "split": split, "size": size})

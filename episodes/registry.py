"""Dataset names, their splits, and ``load_split``: one entry point from a name to a ``ClassSplit``.

Usage::

    split = load_split("omniglot", "train")                 # Vinyals train: 4112 classes x 20
    split = load_split("mnist", "test", root="/tmp/fewshot", device="cuda")
    prepare("fashion-mnist", source="~/Downloads/fashion-mnist", root="/tmp/fewshot")
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import idx, mini_imagenet, omniglot
from .errors import DataError
from .paths import dataset_dir, is_url
from .preprocessing import Preprocessing
from .types import ClassSplit


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's valid splits, default image side, store builder
    ``prepare(source, root, size=, force=, quiet=)`` and ``preprocessing(size)``: how the store
    turns an image into pixels (what a model trained on it expects of your images)."""

    name: str
    splits: tuple[str, ...]
    prepare: Callable[..., Path]
    load: Callable[..., ClassSplit]  # load(split, root, *, size, rotations) -> ClassSplit
    preprocessing: Callable[[int], Preprocessing]
    default_size: int = 28


def _prepare_idx(name: str) -> Callable[..., Path]:
    def run(source=None, root=None, **kw) -> Path:
        return idx.prepare_mnist(name, source, root, **kw)

    run.__doc__ = f"Build the {name} store (see ``episodes.idx.prepare_mnist``)."
    return run


def _with_rotations(load: Callable[..., ClassSplit]) -> Callable[..., ClassSplit]:
    def run(split, root=None, *, size, rotations=None) -> ClassSplit:
        result = load(split, root, size=size)
        return result if rotations is None else rotate_classes(result, rotations)

    return run


DATASETS: dict[str, DatasetInfo] = {
    "omniglot": DatasetInfo("omniglot", omniglot.SPLITS, omniglot.prepare_omniglot,
                            omniglot.load_omniglot,
                            omniglot.preprocessing),
    "mnist": DatasetInfo("mnist", idx.SPLITS, _prepare_idx("mnist"),
                         _with_rotations(lambda split, root,
                                         size: idx.load_idx_split("mnist", split, root,
                                                                                      size=size)),
                         idx.preprocessing),
    "fashion-mnist": DatasetInfo("fashion-mnist", idx.SPLITS, _prepare_idx("fashion-mnist"),
                                 _with_rotations(lambda split, root,
                                                 size: idx.load_idx_split("fashion-mnist", split,
                                                                                              root,
                                                                                              size=size)),
                                 idx.preprocessing),
    "mini-imagenet": DatasetInfo("mini-imagenet", mini_imagenet.SPLITS,
                                 mini_imagenet.prepare_mini_imagenet,
                                 _with_rotations(mini_imagenet.load_mini_imagenet),
                                 mini_imagenet.preprocessing,
                                 mini_imagenet.DEFAULT_SIZE),
}


def dataset_info(dataset: str) -> DatasetInfo:
    """The registry entry of ``dataset``, or a DataError listing the known names.

    Usage: ``dataset_info("mnist").splits`` -> ``("train", "test")``.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset '{dataset}': choose one of {', '.join(DATASETS)}")
    return DATASETS[dataset]


def dataset_preprocessing(dataset: str, size: int | None = None) -> Preprocessing:
    """How ``dataset``'s store prepares images at ``size`` (default: the dataset's default size).

    Usage: ``dataset_preprocessing("omniglot")`` -> 28 px, 1 channel, inverted, Lanczos.
    """
    info = dataset_info(dataset)
    return info.preprocessing(info.default_size if size is None else size)


def prepare(
    dataset: str,
    source: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    *,
    size: int | None = None,
    **kw,
) -> Path:
    """Build ``dataset``'s store under the data root (no-op if present unless ``force=True``);
    returns its path.

    ``size`` ``None`` = the dataset's default (28; 84 for mini-ImageNet). A local ``source`` may
    also be the folder above the dataset's own (a data root holding ``omniglot/``, as downloads are
    laid out). Usage: ``prepare("omniglot", source="~/Downloads/omniglot", root="/tmp/fewshot",
    size=28)``.
    """
    info = dataset_info(dataset)
    source = _dataset_folder(dataset, source)
    created = _missing_folders(dataset_dir(dataset, root))
    try:
        return info.prepare(source, root, size=info.default_size if size is None else size, **kw)
    # a failed build leaves no empty <root>/<dataset>/ behind (what it downloaded stays)
    except BaseException:
        _remove_if_empty(created)
        raise


# A file each dataset's own folder holds (how a folder above it is told apart from it).
_OWN_FILES = {"omniglot": ("images_background.zip", "images_background"),
              "mnist": ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"),
              "fashion-mnist": ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")}


def _dataset_folder(dataset: str, source: str | os.PathLike | None) -> str | os.PathLike | None:
    """``source``, or ``source/<dataset>`` when ``source`` is a local folder above the dataset's
    own."""
    if source is None or is_url(str(source)) or dataset not in _OWN_FILES:
        return source
    folder = Path(source).expanduser()
    nested = folder / dataset
    own = _OWN_FILES[dataset]
    if folder.is_dir() and not any((folder / f).exists() for f in own) and any((nested / f).exists()
                                                                               for f in own):
        return nested
    return source


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first: a parent empties once its child is gone
        try:
            folder.rmdir()
        # not empty (a kept download, another process's files) or already gone: leave it
        except OSError:
            return


def load_split(
    dataset: str,
    split: str,
    root: str | os.PathLike | None = None,
    *,
    size: int | None = None,
    rotations: Sequence[int] | None = None,
    device: str | torch.device | None = None,
    download: bool = False,
) -> ClassSplit:
    """Load a whole split into memory as a class-sorted uint8 ``ClassSplit`` (pure: nothing is
    cached).

    ``rotations`` (multiples of 90, counter-clockwise) turns each class into one class per rotation
    (names ``<class>/rotDDD``); Omniglot's Vinyals splits (``train|val|test|trainval``) fix their
    own. ``size`` ``None`` = the dataset's default (28; 84 for mini-ImageNet). A missing store
    raises a DataError naming the ``fewshot prepare`` command to run, unless ``download=True``:
    then, as torchvision's datasets do, the official files are downloaded into the data root
    (md5-checked; files already there are reused) and the store is built first, once (mini-ImageNet
    cannot be downloaded: ImageNet's terms; its error says how to prepare it). Usage:
    ``load_split("omniglot", "background", rotations=(0, 90, 180, 270))``; ``load_split("omniglot",
    "train", download=True)`` on a fresh machine.
    """
    info = dataset_info(dataset)
    if split not in info.splits:
        raise DataError(
            f"unknown {dataset} split '{split}': choose one of {', '.join(info.splits)}")
    size = info.default_size if size is None else size
    if download:
        info.prepare(None, root, size=size, quiet=True)  # a no-op when the store exists
    result = info.load(split, root, size=size, rotations=rotations)
    return result.to(device) if device is not None else result


def split_protocol(dataset: str, split: str) -> str:
    """The protocol a split's numbers are on, as manifests and results tables name it: ``vinyals``
    or ``maml`` (Omniglot's two families, docs/data.md), ``lake`` (Omniglot's two archives),
    ``ravi`` (mini-ImageNet), ``official`` (MNIST, Fashion-MNIST's train/test), ``sinusoid``.

    Usage: ``split_protocol("omniglot", "maml-test")`` -> ``"maml"``."""
    if dataset == "sinusoid":
        return "sinusoid"
    info = dataset_info(dataset)
    if split not in info.splits:
        raise DataError(
            f"unknown {dataset} split '{split}': choose one of {', '.join(info.splits)}")
    if dataset == "omniglot":
        if split in omniglot.MAML_SPLITS:
            return "maml"
        return "lake" if split in omniglot.PARTS else "vinyals"
    return "ravi" if dataset == "mini-imagenet" else "official"


def rotate_classes(split: ClassSplit, rotations: Sequence[int]) -> ClassSplit:
    """Each class of ``split`` becomes ``len(rotations)`` classes, its images rotated
    counter-clockwise.

    Usage: ``rotate_classes(load_split("mnist", "train"), (0, 180))`` -> 20 classes.
    """
    rots = tuple(int(r) for r in rotations)
    if not rots or any(r % 90 for r in rots):
        raise DataError(
            "rotations must be a non-empty list of multiples of 90 degrees, got "
            f"{list(rotations)}: "
            "pass e.g. (0, 90, 180, 270)")
    offsets = split.class_offsets.cpu().numpy()
    picks = [(c, r) for c in range(split.num_classes) for r in rots]
    data, off = omniglot.rotated_classes(split.data.cpu(), offsets, picks)
    names = [f"{split.class_names[c]}/rot{r % 360:03d}" for c, r in picks]
    return ClassSplit(data, off, names, name=split.name, meta={**split.meta, "rotations": rots})

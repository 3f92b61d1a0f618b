"""Omniglot: read the official archives, verify them, convert once into an HDF5 store, load splits.

Store (``<root>/omniglot/omniglot-<size>.h5``): parts ``background`` (30 alphabets, 964 characters)
and ``evaluation`` (20 alphabets, 659 characters), 20 drawings per character, uint8 ``[M, 1, S, S]``
inverted (strokes 255, background 0: the MAML paper's ``1 - x``), classes named
``Alphabet/characterNN``, sorted; plus the Vinyals split lists under
``splits/vinyals/{train,val,test,trainval}``.

Two split families:

- **Vinyals** (``train|val|test|trainval``, the default): 1028 / 172 / 423 characters by alphabet,
  each rotation a class of its own (4112 / 688 / 1692 classes); the test alphabets are unseen in
  training.
- **MAML** (``maml-train|maml-val|maml-test|maml-trainval``): the MAML reference code's protocol,
  1100 / 100 / 423 characters drawn at random from both archives (so every alphabet appears in
  training), and each class of every task rotated by its own random multiple of 90 degrees
  (``ClassSplit.task_rotations``). The reference code shuffles in file-system order, which cannot be
  recovered; these lists are a seeded draw of the same sizes (``scripts/make_maml_split.py``),
  shipped with the package and md5-checked.

Usage::

    # local archives, content checked
    path = prepare_omniglot(source="/data/omniglot", root="/tmp/fewshot")
    # Vinyals: 4112 classes (rotations as classes)
    split = load_omniglot("train", root="/tmp/fewshot")
"""
from __future__ import annotations

import os
import re
import sys
import zipfile
import zlib
from functools import partial
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .download import fetch, join_url, md5_file
from .errors import DataError
from .paths import dataset_dir, is_url, store_path
from .preprocessing import Preprocessing
from .store import Store, StoreWriter, offsets_from_counts
from .types import ClassSplit

NAME = "omniglot"
BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
SPLITS_URL = "https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/splits/vinyals/"
PARTS = ("background", "evaluation")
VINYALS_SPLITS = ("train", "val", "test", "trainval")
MAML_SPLITS = ("maml-train", "maml-val", "maml-test", "maml-trainval")
SPLITS = VINYALS_SPLITS + MAML_SPLITS + PARTS
MAML_SPLIT_DIR = Path(__file__).resolve().parent / "splits" / "omniglot-maml"
MAML_SPLIT_MD5 = {
    "maml-train": "134ec39e9360cdbf6315a67ac8624703",
    "maml-val": "5a0653207752e29d51cd8c33973a404d",
    "maml-test": "f9fc58b918d849dff7ea4c7b10b939ee",
    "maml-trainval": "04feb1498d16445cdb8de613d42e9a67",
}
ROTATIONS = (0, 90, 180, 270)
DRAWINGS = 20
# part -> (alphabets, characters) of the official archives.
EXPECTED_COUNTS = {"background": (30, 964), "evaluation": (20, 659)}
# Official md5s, keyed by the path relative to the source folder / base URL.
MD5 = {
    "images_background.zip": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation.zip": "6b91aef0f799c5bb55b94e3f2daec811",
    "splits/vinyals/train.txt": "433d1fcc2b20dcee2983ceb524586f7f",
    "splits/vinyals/val.txt": "78c535fa427b12b6596908376a0b3f34",
    "splits/vinyals/test.txt": "43534e6d5f9e74acbb7de1b4874abad8",
    "splits/vinyals/trainval.txt": "888433268015439fd05fb6e9006ead50",
}
_LINE = re.compile(r"^([^/]+/character\d+)/rot(\d{3})$")


def prepare_command(root: str | os.PathLike | None = None, size: int = 28) -> str:
    """The shell command that builds the store. Usage: ``prepare_command("/data")``."""
    cmd = f"fewshot prepare {NAME}"
    if root is not None:
        cmd += f" --root {root}"
    if size != 28:
        cmd += f" --size {size}"
    return cmd


# ----------------------------------------------------------------------------- archive readers
class _Source:
    """One part's images: a zip archive or an extracted folder, indexed as {class name:
    [entries]}."""

    def __init__(self, part: str, location: Path) -> None:
        self.part = part
        self.location = location
        self.classes: dict[str, list[str]] = {}

    def read(self, entry: str) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _index(self, files: Sequence[str], dirs: Sequence[str]) -> None:
        """Build ``classes`` from relative paths ``Alphabet/characterNN/file.png`` and class
        folders."""
        classes: dict[str, list[str]] = {}
        for d in dirs:
            parts = d.strip("/").split("/")
            if len(parts) == 2:
                classes.setdefault("/".join(parts), [])
        for f in files:
            parts = f.split("/")
            if parts[-1].startswith(".") or "__MACOSX" in parts:
                continue
            if len(parts) != 3 or not parts[-1].lower().endswith(".png"):
                raise DataError(
                    f"{self.location}: unexpected entry '{f}' (expected "
                    f"images_{self.part}/Alphabet/characterNN/*.png); "
                    "the archive has the wrong layout: use the official Omniglot archive"
                )
            classes.setdefault(f"{parts[0]}/{parts[1]}", []).append(f)
        for name, entries in classes.items():
            entries.sort()
            if not entries:
                raise DataError(
                    f"{self.location}: class folder '{name}' is empty; the archive is incomplete: "
                    "re-download it")
            if len(entries) != DRAWINGS:
                raise DataError(
                    f"{self.location}: class '{name}' has {len(entries)} PNGs, expected "
                    f"{DRAWINGS}; "
                    "the archive is incomplete or altered: re-download it"
                )
        alphabets = {name.split("/")[0] for name in classes}
        want_alpha, want_chars = EXPECTED_COUNTS[self.part]
        if len(alphabets) != want_alpha or len(classes) != want_chars:
            raise DataError(
                f"{self.location}: found {len(alphabets)} alphabets / {len(classes)} characters, "
                "expected "
                f"{want_alpha} / {want_chars} for images_{self.part}; the archive is incomplete or "
                "the wrong one: "
                "re-download it"
            )
        self.classes = dict(sorted(classes.items()))


def _readable_methods() -> dict[int, str]:
    """Zip compression methods this Python can decompress (bz2/lzma are optional modules)."""
    methods = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
    for module, method, name in (("bz2", zipfile.ZIP_BZIP2, "bzip2"),
                                 ("lzma", zipfile.ZIP_LZMA, "lzma")):
        try:
            __import__(module)
            methods[method] = name
        except ImportError:
            pass
    return methods


_METHOD_NAMES = {1: "shrink", 6: "implode", 9: "deflate64", 12: "bzip2", 14: "lzma",
                 93: "zstandard", 95: "xz",
                 97: "wavpack", 98: "ppmd"}


def _check_member(path: Path, part: str, info: zipfile.ZipInfo) -> None:
    """Refuse, before decoding anything, a member zipfile cannot read (why: it would fail mid-way
    with a traceback)."""
    if info.flag_bits & 0x1:
        raise DataError(
            f"{path}: member '{info.filename}' is encrypted (password-protected), which fewshot "
            "cannot read: use the "
            "official unencrypted archive, or extract it yourself and pass the folder holding "
            f"images_{part}/ as --source"
        )
    readable = _readable_methods()
    if info.compress_type not in readable:
        name = _METHOD_NAMES.get(info.compress_type, "unknown")
        raise DataError(
            f"{path}: member '{info.filename}' uses zip compression method {info.compress_type} "
            f"({name}), which this "
            f"Python cannot decompress (it reads {', '.join(readable.values())}): use the official "
            "archive, or extract "
            f"it with another tool and pass the folder holding images_{part}/ as --source"
        )


class _ZipSource(_Source):
    def __init__(self, part: str, path: Path) -> None:
        super().__init__(part, path)
        prefix = f"images_{part}/"
        try:
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except FileNotFoundError as exc:
            raise DataError(f"archive {path} not found: check --source") from exc
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise DataError(
                f"{path} is not a valid zip archive (truncated or corrupt: {exc}): re-download "
                "it") from exc
        files: list[str] = []
        dirs: list[str] = []
        try:
            for info in infos:
                if "__MACOSX" in info.filename:
                    continue
                if not info.filename.startswith(prefix):
                    raise DataError(
                        f"{path}: entry '{info.filename}' is outside '{prefix}'; the archive has "
                        "the wrong layout: "
                        "use the official Omniglot archive"
                    )
                rel = info.filename[len(prefix):]
                if not rel:
                    continue
                if not info.is_dir():
                    _check_member(path, part, info)
                (dirs if info.is_dir() else files).append(rel)
            self._index(files, dirs)
        except BaseException:
            self._zip.close()
            raise

    def read(self, entry: str) -> bytes:
        try:
            return self._zip.read(f"images_{self.part}/{entry}")
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, RuntimeError,
                NotImplementedError) as exc:
            raise DataError(f"{self.location}: cannot read '{entry}' ({exc}); "
                            "the archive is corrupt: re-download it") from exc

    def close(self) -> None:
        self._zip.close()


class _FolderSource(_Source):
    def __init__(self, part: str, path: Path) -> None:
        super().__init__(part, path)
        files: list[str] = []
        dirs: list[str] = []
        for dirpath, dirnames, filenames in os.walk(path):
            rel_dir = Path(dirpath).relative_to(path).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirs.extend(rel_dir + d for d in dirnames)
            files.extend(rel_dir + f for f in filenames)
        self._index(files, dirs)

    def read(self, entry: str) -> bytes:
        try:
            return (self.location / entry).read_bytes()
        except OSError as exc:
            raise DataError(
                f"cannot read {self.location / entry}: {exc.strerror or exc}; check its "
                "permissions or "
                "extract the archive again") from exc


def _open_local(part: str, folder: Path) -> _Source:
    archive = folder / f"images_{part}.zip"
    extracted = folder / f"images_{part}"
    if archive.is_file():
        return _ZipSource(part, archive)
    if extracted.is_dir():
        return _FolderSource(part, extracted)
    raise DataError(
        f"neither {archive} nor the folder {extracted} exists: point --source at the folder "
        "holding the "
        "Omniglot archives")


# ----------------------------------------------------------------------------- decoding
def preprocessing(size: int = 28) -> Preprocessing:
    """How the store turns an Omniglot PNG into pixels: grayscale, Lanczos (anti-aliased) resize to
    ``size``, inverted (strokes 255). A model trained on the store wants your images the same
    way."""
    return Preprocessing(size=size, channels=1, invert=True, interpolation="lanczos")


def decode_png(data: bytes, size: int, what: str = "image") -> np.ndarray:
    """Decode one Omniglot PNG into an inverted uint8 ``[size, size]`` array (strokes 255,
    background 0).

    The store's own decoder is :func:`preprocessing`, so ``preprocessing(size)(png)`` gives exactly
    the store's pixels (divided by 255). Usage: ``decode_png(zip.read(name), 28)``.
    """
    return preprocessing(size).pixels(data, what=what, kind="PNG",
                                      fix="the data is corrupt: re-download it",
                                      bomb_fix="the archive is corrupt or was tampered with: use "
                                               "the official "
                                               "Omniglot archive")[0]


def _decode_part(source: _Source, size: int, quiet: bool) -> tuple[np.ndarray, np.ndarray,
                                                                   list[str]]:
    names = list(source.classes)
    total = sum(len(v) for v in source.classes.values())
    images = np.empty((total, 1, size, size), dtype=np.uint8)
    bar = tqdm(total=total, desc=f"omniglot {source.part}", unit="img",
               disable=quiet or not sys.stderr.isatty(),
               leave=False)
    i = 0
    with bar:
        for name in names:
            for entry in source.classes[name]:
                images[i, 0] = decode_png(source.read(entry), size,
                                          what=f"{source.location}: '{entry}'")
                i += 1
            bar.update(len(source.classes[name]))
    return images, offsets_from_counts([len(source.classes[n]) for n in names]), names


# ----------------------------------------------------------------------------- split lists
def _read_split_file(path: Path, expected_md5: str | None,
                     fix: str = "use the original Vinyals split file") -> list[str]:
    if not path.is_file():
        where = "put the Vinyals split files in <source>/splits/vinyals/" if fix.endswith(
            "Vinyals split file") else fix
        raise DataError(f"split list {path} not found: {where}")
    got = md5_file(path)
    if expected_md5 is not None and got != expected_md5:
        raise DataError(f"split list {path} has md5 {got}, expected {expected_md5}: {fix}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read split list {path} ({exc}): {fix}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_split_line(line: str) -> tuple[str, int]:
    """``"Angelic/character01/rot090"`` -> ``("Angelic/character01", 90)``.

    Usage: ``char, degrees = parse_split_line(line)``.
    """
    m = _LINE.match(line)
    if m is None or int(m.group(2)) not in ROTATIONS:
        raise DataError(
            f"bad split line '{line}': expected 'Alphabet/characterNN/rotDDD' with DDD in "
            "000/090/180/270")
    return m.group(1), int(m.group(2))


# ----------------------------------------------------------------------------- prepare
def prepare_omniglot(
    source: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    *,
    size: int = 28,
    force: bool = False,
    quiet: bool = False,
    md5: Mapping[str, str] | None = None,
) -> Path:
    """Build ``<root>/omniglot/omniglot-<size>.h5`` once and return its path (a no-op if it exists,
    unless ``force``).

    ``source``: ``None`` downloads the official archives and Vinyals lists (md5 checked); a base URL
    downloads ``<url>/images_*.zip`` and ``<url>/splits/vinyals/*.txt`` (md5 checked); a folder uses
    local archives (or extracted ``images_*`` folders) whose content is verified instead of their
    md5 (mirrors re-pack), with the split lists in ``<folder>/splits/vinyals/`` (md5 checked).
    ``md5`` overrides entries of :data:`MD5` (keys like ``"images_background.zip"``). Usage:
    ``prepare_omniglot("~/Downloads/omniglot", "/tmp/fewshot")``.
    """
    size = _check_size(size)
    out = store_path(NAME, root, size)
    if out.exists() and not force:
        return out
    table = {**MD5, **(md5 or {})}
    if source is None or is_url(str(source)):
        base = str(source) if source is not None else BASE_URL
        split_base = join_url(base, "splits/vinyals") if source is not None else SPLITS_URL
        dest = dataset_dir(NAME, root)
        archives = {p: fetch(base, f"images_{p}.zip", dest, table[f"images_{p}.zip"], quiet=quiet)
                    for p in PARTS}
        split_paths = {
            s: fetch(split_base, f"{s}.txt", dest / "splits" / "vinyals",
                     table[f"splits/vinyals/{s}.txt"], quiet=quiet)
            for s in VINYALS_SPLITS
        }
        split_lists = {s: _read_split_file(split_paths[s], table[f"splits/vinyals/{s}.txt"])
                       for s in VINYALS_SPLITS}
        openers: list[Callable[[], _Source]] = [partial(_ZipSource, p, archives[p]) for p in PARTS]
    else:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"--source {folder} is not a folder: pass the folder holding images_background.zip "
                "and "
                "images_evaluation.zip, or a URL")
        split_lists = {
            s: _read_split_file(folder / "splits" / "vinyals" / f"{s}.txt",
                                table[f"splits/vinyals/{s}.txt"]) for s in VINYALS_SPLITS
        }
        openers = [partial(_open_local, p, folder) for p in PARTS]
    sources: list[_Source] = []
    try:
        for opener in openers:
            sources.append(opener())
        known = {name for s in sources for name in s.classes}
        for split, lines in split_lists.items():
            for line in lines:
                char, _ = parse_split_line(line)
                if char not in known:
                    raise DataError(
                        f"Vinyals split '{split}' lists '{line}', which is not in the archives: "
                        "use the "
                        "original split files")
        with StoreWriter(out, dataset=NAME, size=size, inverted=True,
                         source=str(source or BASE_URL)) as writer:
            for s in sources:
                images, offsets, names = _decode_part(s, size, quiet)
                writer.add_part(s.part, images, offsets, names)
            for split, lines in split_lists.items():
                writer.add_strings(f"splits/vinyals/{split}", lines)
    finally:
        for s in sources:
            s.close()
    return out


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size,
                                                (int, np.integer)) or not 1 <= int(size) <= 1024:
        raise DataError(
            f"image size must be an integer in 1..1024, got {size!r}: pass e.g. --size 28")
    return int(size)


# ----------------------------------------------------------------------------- loading
def rotate(images: torch.Tensor, degrees: int) -> torch.Tensor:
    """Rotate ``[..., H, W]`` images counter-clockwise by a multiple of 90 degrees (as PIL's
    ``Image.rotate``).

    Usage: ``rotate(x, 90)``.
    """
    if degrees % 90 != 0:
        raise DataError(
            f"rotation must be a multiple of 90 degrees, got {degrees}: use 0, 90, 180 or 270")
    k = (degrees // 90) % 4
    return images if k == 0 else torch.rot90(images, k, dims=(-2, -1))


def rotated_classes(
    data: torch.Tensor, offsets: np.ndarray, picks: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Materialise classes ``picks = [(source class index, degrees), ...]`` in order, one gather per
    rotation.

    Usage: ``data, offsets = rotated_classes(images, offsets, [(0, 0), (0, 90)])``.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    classes = np.fromiter((c for c, _ in picks), dtype=np.int64, count=len(picks))
    degrees = np.fromiter((d for _, d in picks), dtype=np.int64, count=len(picks))
    counts = offsets[classes + 1] - offsets[classes]
    out_off = offsets_from_counts(counts)
    total = int(out_off[-1])
    # Per output example: its source row and its rotation.
    src = np.repeat(offsets[classes] - out_off[:-1], counts) + np.arange(total)
    deg = np.repeat(degrees, counts)
    out = torch.empty((total,) + tuple(data.shape[1:]), dtype=data.dtype)
    for d in np.unique(degrees):
        dst = np.flatnonzero(deg == d)
        out[torch.from_numpy(dst)] = rotate(data[torch.from_numpy(src[dst])], int(d))
    return out, torch.from_numpy(out_off)


def load_omniglot(
    split: str,
    root: str | os.PathLike | None = None,
    *,
    size: int = 28,
    rotations: Sequence[int] | None = None,
) -> ClassSplit:
    """Load an Omniglot split from the store as one uint8 ``[M, 1, S, S]`` tensor.

    Vinyals splits (``train|val|test|trainval``) materialise the listed rotations as classes named
    ``Alphabet/characterNN/rotDDD``; ``rotations`` must then be ``None``. MAML splits
    (``maml-train|maml-val|maml-test|maml-trainval``) hold the listed characters unrotated, with
    ``task_rotations=(0, 90, 180, 270)``: the samplers rotate each class of each task. Lake splits
    (``background|evaluation``) are unrotated unless ``rotations`` (e.g. ``(0, 90, 180, 270)``) is
    given. Usage: ``load_omniglot("background", "/tmp/fewshot", rotations=(0, 90, 180, 270))``.
    """
    if split not in SPLITS:
        raise DataError(f"unknown omniglot split '{split}': choose one of {', '.join(SPLITS)}")
    size = _check_size(size)
    path = store_path(NAME, root, size)
    command = prepare_command(root if root is not None else path.parent.parent, size)
    hint = f"run `{command} --force` to rebuild it"
    if not path.is_file():
        raise DataError(
            f"no omniglot store at {path}: run `{prepare_command(path.parent.parent, size)}` (add "
            "--source "
            "DIR for local archives)")
    with Store(path, fix_hint=hint) as store:
        if split in PARTS:
            part = store.part(split)
            data = torch.from_numpy(part.images)
            if rotations is None:
                return ClassSplit(data, torch.from_numpy(part.class_offsets), part.class_names,
                                  name=f"{NAME}/{split}",
                                  meta={"dataset": NAME, "split": split, "size": size,
                                        "rotations": (0,)})
            rots = tuple(int(r) for r in rotations)
            for r in rots:
                if r % 90 != 0:
                    raise DataError(
                        f"rotations must be multiples of 90 degrees, got {r}: pass e.g. (0, 90, "
                        "180, 270)")
            if not rots:
                raise DataError("rotations must not be empty: pass None for no rotation")
            picks = [(c, r) for c in range(len(part.class_names)) for r in rots]
            names = [f"{part.class_names[c]}/rot{r % 360:03d}" for c, r in picks]
            out, off = rotated_classes(data, part.class_offsets, picks)
            return ClassSplit(out, off, names, name=f"{NAME}/{split}",
                              meta={"dataset": NAME, "split": split, "size": size,
                                    "rotations": rots})
        family = "MAML" if split in MAML_SPLITS else "Vinyals"
        if rotations is not None:
            raise DataError(
                f"the {family} split '{split}' fixes its own rotations: pass rotations=None")
        if split in MAML_SPLITS:
            lines = _read_split_file(MAML_SPLIT_DIR / f"{split.removeprefix('maml-')}.txt",
                                     MAML_SPLIT_MD5[split],
                                     fix="the package's split lists were changed: reinstall "
                                         "fewshot")
        else:
            lines = store.strings(f"splits/vinyals/{split}")
        parts = [store.part(p) for p in PARTS]
    data = torch.from_numpy(np.concatenate([p.images for p in parts]))
    offsets = np.concatenate(
        [parts[0].class_offsets, parts[1].class_offsets[1:] + parts[0].class_offsets[-1]])
    index = {name: i for i, name in enumerate(parts[0].class_names + parts[1].class_names)}
    picks = []
    for line in lines:
        char, deg = (line, 0) if split in MAML_SPLITS else parse_split_line(line)
        if char not in index:
            raise DataError(
                f"store {path}: split '{split}' lists '{line}' but the store lacks it: {hint}")
        picks.append((index[char], deg))
    out, off = rotated_classes(data, offsets, picks)
    if split in MAML_SPLITS:
        return ClassSplit(out, off, list(lines), name=f"{NAME}/{split}", task_rotations=ROTATIONS,
                          meta={"dataset": NAME, "split": split, "size": size, "family": "maml"})
    return ClassSplit(out, off, list(lines), name=f"{NAME}/{split}",
                      meta={"dataset": NAME, "split": split, "size": size, "rotations": ROTATIONS,
                            "family": "vinyals"})

"""Preprocessing as a value: how an image file becomes the exact tensor a model saw in training.

Why a value: a model trained on a store only works on images prepared the way the store prepared
them (Omniglot: 28 px, grayscale, Lanczos, inverted so strokes are 255). The stores' decoders and
your own images go through this one class, so the pixels are the same bit for bit, and a pretrained
model can carry its preprocessing in its manifest.

Steps, in order: decode with Pillow into ``L`` (1 channel) or ``RGB`` (3); resize to ``size`` with
``interpolation`` if the image is not already that size; invert (``255 - x``) if ``invert``; then
``__call__`` divides by ``scale`` into float32 (``torch.div(uint8, 255.0)``, exactly what
``episodes.sampler.gather_batch`` feeds a learner).

Usage::

    prep = Preprocessing(size=28, channels=1, invert=True, interpolation="lanczos")
    x = prep("my_char.png")              # float32 [1, 28, 28] in [0, 1], ink high
    split = prep.folder("my_chars/")     # a ClassSplit, one subfolder per class
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import DataError
from .images import decode_image_file
from .polarity import detect_polarity
from .types import ClassSplit

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_MODES = {1: "L", 3: "RGB"}
_FIELDS = ("size", "channels", "invert", "interpolation", "scale")
logger = logging.getLogger(__name__)
# (recipe, detected polarity) already logged by __call__
_WARNED: set[tuple["Preprocessing", str]] = set()


def check_size(size: Any) -> tuple[int, int] | None:
    """``size`` as ``(height, width)`` (an int means a square), ``None`` kept; else a one-line
    DataError."""
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) and not isinstance(size, bool) else tuple(size) \
        if isinstance(size, (tuple, list)) else None
    if hw is None or len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                         for v in hw):
        raise DataError(
            f"size must be a positive int or (height, width), got {size!r}: pass e.g. size=28")
    return (int(hw[0]), int(hw[1]))


@dataclass(frozen=True)
class Preprocessing:
    """Decode, resize, invert and scale images the way a store (and so a model trained on it) did.

    - ``size``: ``int`` (square) or ``(height, width)``; ``None`` keeps each image's size.
    - ``channels``: 1 (grayscale, Pillow ``L``) or 3 (``RGB``).
    - ``invert``: ``255 - x`` after resizing (Omniglot stores strokes as 255, the MAML paper's ``1 -
      x``).
    - ``interpolation``: one of :data:`INTERPOLATIONS` (Pillow filters; the stores use
      ``"lanczos"``).
    - ``scale``: the model sees float32 ``uint8 / scale`` (the samplers divide by 255).
    """

    size: int | tuple[int, int] | None = None
    channels: int = 3
    invert: bool = False
    interpolation: str = "bilinear"
    scale: float = 255.0

    def __post_init__(self) -> None:
        hw = check_size(self.size)
        if hw is not None and not isinstance(self.size, int):
            # lists (from JSON) become tuples: the value stays hashable
            object.__setattr__(self, "size", hw)
        if self.channels not in _MODES or isinstance(self.channels, bool):
            raise DataError(
                f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels!r}: pass "
                "channels=1 or 3")
        if not isinstance(self.invert, bool):
            raise DataError(
                f"invert must be True or False, got {self.invert!r}: pass invert=True for "
                "light-on-dark "
                "models such as Omniglot's")
        if self.interpolation not in INTERPOLATIONS:
            raise DataError(f"unknown interpolation {self.interpolation!r}: choose one of "
                            f"{', '.join(INTERPOLATIONS)}")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or \
                not 0 < float(self.scale) < float("inf"):
            raise DataError(
                f"scale must be a positive finite number (the model sees uint8 / scale), got "
                f"{self.scale!r}: pass scale=255.0")
        object.__setattr__(self, "scale", float(self.scale))

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what a pretrained manifest records under ``preprocessing``)."""
        d = asdict(self)
        if isinstance(d["size"], tuple):
            d["size"] = list(d["size"])
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str = "preprocessing") -> "Preprocessing":
        """The inverse of :meth:`to_dict`; unknown keys or bad values give one DataError naming
        ``where``."""
        if not isinstance(data, dict):
            raise DataError(f"{where} must be a JSON object with keys {', '.join(_FIELDS)}, got "
                            f"{type(data).__name__}: fix or remove it")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise DataError(
                f"{where} has unknown keys {', '.join(unknown)}: use only {', '.join(_FIELDS)}")
        try:
            return cls(**data)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None

    # ------------------------------------------------------------------ pixels
    def pixels(self, image: Any, *, what: str | None = None, fix: str = "fix or remove the file",
               bomb_fix: str | None = None, kind: str = "image") -> np.ndarray:
        """uint8 ``[channels, H, W]``: what a store holds for ``image`` (a PIL image, a path or the
        file's bytes).

        ``what``/``fix``/``bomb_fix``/``kind`` word the error for an unreadable file (see
        ``episodes.images.decode_image_file``).
        """
        mode = _MODES[self.channels]
        if isinstance(image, Image.Image):
            im = image.convert(mode)
        elif isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
            label = what or (repr(os.fspath(image)) if isinstance(image, (str, os.PathLike))
                             else "image")
            source = bytes(image) if isinstance(image, (bytearray, memoryview)) else image
            im = decode_image_file(source, mode, what=label, fix=fix, bomb_fix=bomb_fix, kind=kind)
        else:
            raise DataError(
                f"cannot preprocess a {type(image).__name__}: pass a PIL image, a file path or the "
                "file's bytes")
        hw = check_size(self.size)
        if hw is not None and im.size != (hw[1], hw[0]):
            im = im.resize((hw[1], hw[0]), INTERPOLATIONS[self.interpolation])
        arr = np.asarray(im, dtype=np.uint8)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        # Pillow's buffer is read-only: copy it (255 - x already is a new array), or
        # torch.from_numpy warns
        return 255 - arr if self.invert else arr.copy(order="C")

    def to_float(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (any shape) as the model's float32 input: ``torch.div(pixels, scale)``."""
        return torch.div(pixels, self.scale).to(torch.float32)

    def __call__(self, image: Any, *, invert: bool | None = None) -> torch.Tensor:
        """float32 ``[channels, H, W]``: ``image`` (PIL image, path or bytes) as the model saw its
        training images.

        Stack several with ``torch.stack([prep(p) for p in paths])`` to get a batch. A grayscale
        image is turned the stores' way round (strokes bright) from its own border
        (``episodes.polarity``) unless ``invert`` forces it: an MNIST-style digit (light on black)
        through Omniglot's recipe is then not inverted, with one logged warning per kind of
        mismatch. ``pixels`` stays the recipe itself.
        """
        raw = replace(self, invert=False).pixels(image)
        pol = detect_polarity([raw], invert=invert, channels=self.channels,
                              recipe_invert=self.invert)
        if pol.invert != self.invert and (self, pol.detected) not in _WARNED:
            _WARNED.add((self, pol.detected))
            logger.warning("%s", pol.line)
        return self.to_float(torch.from_numpy(255 - raw if pol.invert else raw))

    def folder(self, path: str | os.PathLike, name: str | None = None, *,
               invert: bool | None = None) -> ClassSplit:
        """A ``ClassSplit`` of ``path/<class>/<image files>`` preprocessed this way, grayscale
        folders turned the right way round from their borders unless ``invert`` forces it (see
        :func:`read_image_folder`)."""
        return read_image_folder(path, self, name=name, invert=invert)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def read_image_folder(path: str | os.PathLike, prep: Preprocessing, name: str | None = None, *,
                      invert: bool | None = None, log: bool = True) -> ClassSplit:
    """A ``ClassSplit`` from ``path/<class>/<image files>``, every image through ``prep``.

    Classes are the sorted subfolder names; files (not starting with ``.``) in sorted order. The
    data is uint8 when ``prep.scale`` is 255 (the samplers divide by 255, giving exactly
    ``prep(image)``), else float32 ``prep(image)`` itself. Without ``prep.size`` every image must
    have the same size.

    Polarity (grayscale only, ``episodes.polarity``): with ``invert=None`` the folder's own
    polarity, read from the images' borders, decides ``prep.invert``, so strokes come out bright
    (the stores' convention) whichever way round the files are; ``invert=True/False`` forces it. The
    decision is in ``meta["polarity"]`` (and ``meta["preprocessing"]`` records the ``invert`` used);
    ``log`` logs its one line (``logging`` WARNING when it overrides ``prep.invert``, else INFO).
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(
            f"{str(root)!r} is not a directory: pass a folder with one subfolder of images per "
            "class")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(
            f"{str(root)!r} has {len(class_dirs)} class subfolders: episodes need at least 2 "
            "classes; "
            "put each class's images in its own subfolder")
    raw = replace(prep, invert=False)
    arrays: list[np.ndarray] = []
    counts: list[int] = []
    expected: tuple[int, ...] | None = None
    for cdir in class_dirs:
        files = _image_files(cdir)
        if not files:
            raise DataError(
                f"class folder {str(cdir)!r} has no image files: add images or remove the folder")
        for f in files:
            arr = raw.pixels(f, what=repr(str(f)), fix="fix or remove the file",
                              bomb_fix="shrink or remove the file "
                                       "(or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it)")
            if expected is None:
                expected = arr.shape[1:]
            elif arr.shape[1:] != expected:
                raise DataError(
                    f"image {str(f)!r} is {arr.shape[2]}x{arr.shape[1]} but earlier images are "
                    f"{expected[1]}x{expected[0]}: pass size= to resize all images"
                )
            arrays.append(arr)
        counts.append(len(files))
    pol = detect_polarity(arrays, invert=invert, channels=prep.channels, recipe_invert=prep.invert)
    if log:
        logger.log(logging.WARNING if pol.invert != prep.invert else logging.INFO, "%s: %s", root,
                   pol.line)
    prep = replace(prep, invert=pol.invert)
    stacked = np.stack(arrays)
    data = torch.from_numpy(255 - stacked if pol.invert else stacked)
    if prep.scale != 255.0:
        data = prep.to_float(data)
    offsets = torch.zeros(len(counts) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.int64), 0)
    return ClassSplit(data, offsets, [d.name for d in class_dirs], name or root.name,
                      {"source": str(root), "preprocessing": prep.to_dict(),
                       "polarity": pol.to_dict()})

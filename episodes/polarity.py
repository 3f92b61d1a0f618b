"""Which way round a folder of grayscale images is, read from the images themselves, and what to do
about it.

Why: every grayscale store holds strokes as 255 on a dark background (Omniglot is inverted from its
black-on-white PNGs; MNIST and Fashion-MNIST are light on black already), so a model trained on one
expects bright strokes. A user's folder may be either way round, and the wrong way costs a
pretrained Omniglot model about 20 points of accuracy on MNIST digits without any error. The
background decides: an image's border is mostly background, so a light border means dark strokes on
a light background (Omniglot's PNGs: invert them) and a dark border means light strokes on a dark
background (MNIST: keep).

Usage::

    pol = detect_polarity(raw_pixels)  # uint8 [M, 1, H, W] (or a list of [1, H, W]), not inverted
    pol.invert                                 # True: apply 255 - x to get the stores' convention
    print(pol.line)                            # one line: what was detected and done
    # forced (``--no-invert``): detection only reported
    pol = detect_polarity(raw_pixels, invert=False)

RGB images (natural photographs have no strokes) are not checked: ``detected`` is ``"not checked"``
and the recipe's ``invert`` is kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import DataError

LIGHT_ON_DARK = "light-on-dark"
DARK_ON_LIGHT = "dark-on-light"
NOT_CHECKED = "not checked"
_WORDS = {LIGHT_ON_DARK: "light strokes on a dark background (like MNIST)",
          DARK_ON_LIGHT: "dark strokes on a light background (like Omniglot's PNGs)"}


@dataclass(frozen=True)
class Polarity:
    """What :func:`detect_polarity` found and decided.

    ``detected``: ``"light-on-dark"``, ``"dark-on-light"`` or ``"not checked"`` (RGB);
    ``border``: the median over images of the mean border level, 0..255 (``nan`` when not checked);
    ``invert``: the decision (``255 - x`` so that strokes are 255, the stores' convention);
    ``forced``: ``True`` when the caller's ``invert=`` decided, not the images.
    """

    detected: str
    border: float
    invert: bool
    forced: bool

    @property
    def line(self) -> str:
        """One line for a log or stderr: what was detected and what is done with the images."""
        if self.detected == NOT_CHECKED:
            doing = "inverting" if self.invert else "not inverting"
            return f"polarity: RGB images, not checked; {doing} them"
        seen = f"borders average {self.border:.0f}/255: {_WORDS[self.detected]}"
        if self.forced:
            agree = self.invert == (self.detected == DARK_ON_LIGHT)
            against = "" if agree else ", against what the images look like"
            return (
                f"polarity: {seen}; {'inverting' if self.invert else 'not inverting'} them as "
                "forced "
                f"({'--invert' if self.invert else '--no-invert'}){against}")
        done = "inverting them" if self.invert else "keeping them as they are"
        flag = "--no-invert" if self.invert else "--invert"
        return (f"polarity: {seen}; {done} so strokes are bright, as the model expects "
                f"({flag} forces the other way)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``border`` ``None`` when not checked)."""
        return {"detected": self.detected,
                "border": None if np.isnan(self.border) else round(self.border, 2),
                "invert": self.invert, "forced": self.forced}


def border_levels(pixels: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Per image, the mean of its outer ring (``max(1, min(H, W) // 14)`` pixels wide: 2 px at 28
    px), 0..255."""
    levels = []
    for img in pixels:
        a = np.asarray(img, dtype=np.float64)
        a = a.reshape(-1, *a.shape[-2:]).mean(axis=0)  # channels averaged
        h, w = a.shape
        b = max(1, min(h, w) // 14)
        ring = np.ones((h, w), dtype=bool)
        ring[b:h - b, b:w - b] = False
        levels.append(a[ring].mean())
    return np.asarray(levels)


def detect_polarity(pixels: np.ndarray | Sequence[np.ndarray], *, invert: bool | None = None,
                    channels: int = 1, recipe_invert: bool = False) -> Polarity:
    """Detect the polarity of raw (not inverted) uint8 images ``[M, C, H, W]`` and decide whether to
    invert.

    ``invert``: ``None`` decides from the images (invert exactly when they are dark strokes on a
    light background); ``True``/``False`` force it (the detection is still reported). ``channels`` 3
    (RGB) is not checked: ``invert`` if given, else ``recipe_invert`` (the preprocessing's own) is
    kept.
    """
    if channels != 1:
        keep = recipe_invert if invert is None else bool(invert)
        return Polarity(NOT_CHECKED, float("nan"), keep, invert is not None)
    if len(pixels) == 0:
        raise DataError(
            "detect_polarity needs at least one image: pass uint8 images [M, C, H, W] with M >= 1")
    border = float(np.median(border_levels(pixels)))
    detected = DARK_ON_LIGHT if border > 127.5 else LIGHT_ON_DARK
    if invert is None:
        return Polarity(detected, border, detected == DARK_ON_LIGHT, False)
    return Polarity(detected, border, bool(invert), True)


def polarity_line(record: dict[str, Any]) -> str:
    """The one line of a :meth:`Polarity.to_dict` record (what ``ClassSplit.meta["polarity"]``
    holds)."""
    border = float("nan") if record["border"] is None else float(record["border"])
    return Polarity(record["detected"], border, bool(record["invert"]), bool(record["forced"])).line

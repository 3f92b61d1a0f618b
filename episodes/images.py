"""Decode one image file with Pillow into a mode, turning every way it can fail into one DataError.

Why a helper: Pillow raises a zoo of exceptions for bad files (``UnidentifiedImageError``,
``OSError``, ``SyntaxError``, ``zlib.error``, ...) and only *warns* for an image between its pixel
limit and twice that, then decodes it (gigabytes for a small crafted PNG). Every reader of images
(Omniglot archives, mini-ImageNet, your own image folder) goes through here, so a decompression bomb
is refused before any pixel is decoded and corrupt files all give one line that says what to do.

Usage: ``im = decode_image_file(blob, "L", what="archive.zip: 'a/b.png'", fix="re-download it")``
"""
from __future__ import annotations

import io
import os
import re
import warnings
import zlib
from pathlib import Path

from .errors import DataError


def decode_image_file(source: bytes | str | os.PathLike, mode: str, *, what: str, fix: str,
                      bomb_fix: str | None = None, kind: str = "image"):
    """The image in ``source`` (bytes or a path) converted to PIL ``mode`` ("L", "RGB").

    ``fix`` ends the message for an unreadable file; ``bomb_fix`` (default ``fix``) the one for an
    image over Pillow's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``, ~89 M pixels); ``kind`` names
    what was expected ("PNG").
    """
    from PIL import Image, UnidentifiedImageError

    stream = io.BytesIO(source) if isinstance(source,
                                              (bytes, bytearray, memoryview)) else Path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as im:  # reads the header only; the size check happens here
                im.load()
                return im.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        sizes = [int(a or b)
                 for a, b in re.findall(r"\((\d+) pixels\)|limit of (\d+) pixels", str(exc))]
        size = (f"{sizes[0]:,} pixels, over Pillow's limit of {sizes[1]:,}" if len(sizes) == 2
                else "over Pillow's pixel limit")
        raise DataError(f"{what} is a decompression bomb ({size}): {bomb_fix or fix}") from exc
    except FileNotFoundError as exc:
        raise DataError(f"{what} does not exist: {fix}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, zlib.error, EOFError) as exc:
        raise DataError(
            f"{what} is not a readable {kind} ({type(exc).__name__}: {exc}): {fix}") from exc

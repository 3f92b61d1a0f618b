"""decode_image_file: decompression bombs (over Pillow's error *and* warning limits) and corrupt
files give one DataError line each, before any pixel is decoded."""
import warnings

import numpy as np
import pytest
from PIL import Image

from episodes.errors import DataError
from episodes.images import decode_image_file
from tests.episodes.image_fixtures import bomb_png


def test_reads_a_good_image_from_bytes_and_path(tmp_path):
    Image.fromarray(np.full((3, 4), 7, dtype=np.uint8)).save(tmp_path / "a.png")
    for source in ((tmp_path / "a.png").read_bytes(), tmp_path / "a.png", str(tmp_path / "a.png")):
        im = decode_image_file(source, "RGB", what="a.png", fix="x")
        assert im.mode == "RGB" and im.size == (4, 3) and np.asarray(im)[0, 0].tolist() == [7, 7, 7]


@pytest.mark.parametrize("width,height,pixels,limit", [
    (20000, 20000, "400,000,000", "178,956,970"),  # Pillow raises DecompressionBombError
    # Pillow only warns and would decode it: refused too
    (10000, 10000, "100,000,000", "89,478,485"),
])
@pytest.mark.parametrize("as_path", [False, True])
def test_decompression_bomb_is_one_line(tmp_path, width, height, pixels, limit, as_path):
    blob = bomb_png(width, height)
    assert len(blob) < 100_000
    source = blob
    if as_path:
        source = tmp_path / "bomb.png"
        source.write_bytes(blob)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning escapes either
        with pytest.raises(DataError) as info:
            decode_image_file(source, "L", what="'bomb.png'", fix="unused", bomb_fix="remove it")
    assert str(info.value) == (
        f"'bomb.png' is a decompression bomb ({pixels} pixels, over Pillow's limit of {limit}): "
        "remove it")


@pytest.mark.parametrize("blob,match", [
    (b"not an image", r"'x' is not a readable PNG \(UnidentifiedImageError: .*\): re-download it"),
    (bomb_png(8, 8)[:40], r"'x' is not a readable PNG \(.*\): re-download it"),  # truncated
])
def test_corrupt_files_are_one_line(blob, match):
    with pytest.raises(DataError, match=match) as info:
        decode_image_file(blob, "L", what="'x'", fix="re-download it", kind="PNG")
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist: fix it"):
        decode_image_file(tmp_path / "nope.png", "L", what=str(tmp_path / "nope.png"), fix="fix it")

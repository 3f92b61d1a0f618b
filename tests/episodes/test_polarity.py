"""Polarity: a grayscale folder is read the stores' way round (strokes bright) whichever way its
files are, detected from the images' borders, with one line saying so; ``invert=`` forces it."""
import logging
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from episodes import DataError, Preprocessing, from_image_folder, read_idx
from episodes.polarity import DARK_ON_LIGHT, LIGHT_ON_DARK, NOT_CHECKED, detect_polarity

OMNIGLOT = Preprocessing(size=28, channels=1, invert=True, interpolation="lanczos")
MNIST = Preprocessing(size=28, channels=1, invert=False, interpolation="lanczos")


def mnist_folder(fewshot_data, root, classes=3, per_class=4):
    """``root/<digit>/<i>.png``: real MNIST test digits as PNGs (light strokes on black), and their
    pixels."""
    images = read_idx(fewshot_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(fewshot_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    pixels = []
    for digit in range(classes):
        (root / str(digit)).mkdir(parents=True)
        for i, row in enumerate(np.flatnonzero(labels == digit)[:per_class]):
            Image.fromarray(images[row], "L").save(root / str(digit) / f"{i}.png")
            pixels.append(images[row])
    return torch.from_numpy(np.stack(pixels))[:, None]


def omniglot_folder(fewshot_data, root, classes=3, per_class=4):
    """``root/<character>/*.png``: real Omniglot archive PNGs (dark strokes on white, 105 x 105)."""
    with zipfile.ZipFile(fewshot_data / "omniglot" / "images_evaluation.zip") as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        chars = sorted({n.rsplit("/", 1)[0] for n in names})[:classes]
        for c, char in enumerate(chars):
            (root / f"c{c}").mkdir(parents=True)
            for name in [n for n in names if n.startswith(char + "/")][:per_class]:
                (root / f"c{c}" / name.rsplit("/", 1)[1]).write_bytes(z.read(name))
    return root


def test_mnist_style_folder_is_kept_and_matches_the_mnist_store_convention(fewshot_data, tmp_path,
                                                                           caplog):
    pixels = mnist_folder(fewshot_data, tmp_path)
    # the Omniglot model's transform inverts (its PNGs are dark on white); these digits are light on
    # black
    with caplog.at_level(logging.INFO, logger="episodes.preprocessing"):
        split = OMNIGLOT.folder(tmp_path)
    assert split.meta["polarity"] == {"detected": LIGHT_ON_DARK, "border": 0.0, "invert": False,
                                      "forced": False}
    assert split.meta["preprocessing"]["invert"] is False
    # 28 px already: the stored digits themselves, strokes bright
    assert torch.equal(split.data, pixels)
    lines = [r for r in caplog.records if "polarity" in r.getMessage()]
    # it overrode the model's recipe: said loudly
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "light strokes on a dark background (like MNIST); keeping them as they are" in lines[
        0].getMessage()
    assert "\n" not in lines[0].getMessage()
    # from_image_folder: the same decision by default, forced the other way on request
    assert torch.equal(from_image_folder(tmp_path, transform=OMNIGLOT).data, pixels)
    forced = from_image_folder(tmp_path, transform=OMNIGLOT, invert=True)
    assert torch.equal(forced.data, 255 - pixels) and forced.meta["polarity"]["forced"] is True
    assert torch.equal(from_image_folder(tmp_path, grayscale=True).data, pixels)


def test_omniglot_style_folder_is_inverted_and_matches_the_omniglot_store(fewshot_data, tmp_path,
                                                                          caplog):
    omniglot_folder(fewshot_data, tmp_path)
    with caplog.at_level(logging.INFO, logger="episodes.preprocessing"):
        split = OMNIGLOT.folder(tmp_path)
    pol = split.meta["polarity"]
    assert pol["detected"] == DARK_ON_LIGHT and pol["invert"] is True and pol["border"] > 250
    by_hand = torch.stack(
        [OMNIGLOT(p) for c in sorted(tmp_path.iterdir()) for p in sorted(c.iterdir())])
    assert torch.equal(split.data.float() / 255.0, by_hand)  # the store's own recipe, bit for bit
    # the store's convention: background 0, strokes 255
    assert split.data[..., :2, :].float().mean() < 5 and split.data.max() == 255
    (line,) = [r for r in caplog.records if "polarity" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert "inverting them so strokes are bright" in line.getMessage()
    # a generic grayscale loader (no transform) now turns them the same way
    plain = from_image_folder(tmp_path, size=28, grayscale=True, interpolation="lanczos")
    assert torch.equal(plain.data, split.data)
    # forced --no-invert keeps the wrong polarity, and the line says it goes against the images
    kept = from_image_folder(tmp_path, transform=OMNIGLOT, invert=False)
    assert torch.equal(kept.data, 255 - split.data)


def test_detection_on_synthesised_strokes_and_rgb_is_not_checked():
    strokes = np.zeros((4, 1, 20, 20), dtype=np.uint8)
    strokes[:, :, 5:15, 9:11] = 255  # a bright bar on black
    assert detect_polarity(strokes).detected == LIGHT_ON_DARK and not detect_polarity(
        strokes).invert
    inverted = detect_polarity(255 - strokes)
    assert inverted.detected == DARK_ON_LIGHT and inverted.invert and inverted.border == 255.0
    forced = detect_polarity(255 - strokes, invert=False)
    assert (forced.forced and not forced.invert
            and "against what the images look like" in forced.line)
    rgb = detect_polarity(np.repeat(255 - strokes, 3, axis=1), channels=3, recipe_invert=False)
    assert rgb.detected == NOT_CHECKED and rgb.invert is False and rgb.to_dict()["border"] is None
    with pytest.raises(DataError, match="needs at least one image"):
        detect_polarity(np.zeros((0, 1, 4, 4), dtype=np.uint8))


def test_not_inverting_gives_writable_pixels(tmp_path):
    """Pillow's buffer is read-only; handing it to torch.from_numpy made PyTorch warn "NumPy array
    is not writable" (once per process, so the array's flag is what is checked)."""
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8), "L").save(tmp_path / "a.png")
    assert MNIST.pixels(tmp_path / "a.png").flags.writeable
    assert Preprocessing(channels=3).pixels(tmp_path / "a.png").flags.writeable
    assert MNIST(tmp_path / "a.png").shape == (1, 28, 28)


def test_one_image_through_the_models_transform_is_turned_the_right_way(fewshot_data, tmp_path,
                                                                        caplog):
    """The README's predict example: an MNIST "3" through Omniglot's recipe was inverted (and
    misread)."""
    pixels = mnist_folder(fewshot_data, tmp_path / "digits", classes=1, per_class=2)
    paths = sorted((tmp_path / "digits" / "0").iterdir())
    with caplog.at_level(logging.INFO, logger="episodes.preprocessing"):
        xs = [OMNIGLOT(p) for p in paths]
    # kept: strokes bright
    assert all(torch.equal(x, pixels[i].float() / 255.0) for i, x in enumerate(xs))
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    # once, not per image
    assert len(warned) == 1 and "keeping them as they are" in warned[0].getMessage()
    assert torch.equal(OMNIGLOT(paths[0], invert=True), (255 - pixels[0]).float() / 255.0)
    omni = omniglot_folder(fewshot_data, tmp_path / "chars", classes=1, per_class=1)
    png = next(next(omni.iterdir()).iterdir())
    # the recipe
    assert torch.equal(OMNIGLOT(png), OMNIGLOT.to_float(torch.from_numpy(OMNIGLOT.pixels(png))))

"""The Ravi split constants against the real CSVs, and image decoding."""
import io

import numpy as np
from PIL import Image

from episodes.mini_imagenet import (
    EXPECTED_COUNTS,
    MD5,
    RAVI_CLASSES,
    decode_image,
    decode_jpeg,
    read_split_csv,
)


def test_real_ravi_csvs_match_md5_counts_and_class_lists(fewshot_data):
    for split, (classes, per) in EXPECTED_COUNTS.items():
        table = read_split_csv(fewshot_data / "mini-imagenet" / "splits" / "ravi" / f"{split}.csv",
                               MD5[f"{split}.csv"])
        assert len(table) == classes and all(len(v) == per for v in table.values())
        assert tuple(table) == RAVI_CLASSES[split]
        assert all(f.startswith(label) and f.endswith(".jpg") and len(f) == 21 for label,
                   files in table.items() for f in files)


def test_decode_grayscale_becomes_rgb():
    buf = io.BytesIO()
    Image.fromarray(np.full((10, 12), 77, dtype=np.uint8)).save(buf, format="PNG")
    out = decode_image(buf.getvalue(), 8)
    assert out.shape == (3, 8, 8) and (out == 77).all()
    assert decode_jpeg is decode_image

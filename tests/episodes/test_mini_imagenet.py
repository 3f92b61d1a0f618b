"""mini-ImageNet (Ravi layout) on synthetic JPEGs; the real Ravi CSVs (no images exist offline) for the checks."""
import numpy as np
import pytest
import torch
from PIL import Image

from episodes import load_split, prepare
from episodes.errors import DataError
from episodes.mini_imagenet import EXPECTED_COUNTS, MD5, decode_jpeg, prepare_mini_imagenet, read_split_csv

# Small synthetic layout: split -> (classes, images per class).
SMALL = {"train": (3, 4), "val": (2, 4), "test": (2, 4)}
NO_MD5 = {f"{s}.csv": None for s in SMALL}


def _make(folder, rng, sizes=((84, 84),), csv_in_splits=False):
    """Write images/*.jpg and the three CSVs; returns {split: {label: [files]}}."""
    (folder / "images").mkdir(parents=True)
    csv_dir = folder / "splits" / "ravi" if csv_in_splits else folder
    csv_dir.mkdir(parents=True, exist_ok=True)
    layout, k = {}, 0
    for split, (classes, per) in SMALL.items():
        rows, layout[split] = ["filename,label"], {}
        for c in range(classes):
            label = f"n{split[:2]}{c:05d}"
            for i in range(per):
                name = f"{label}{i:08d}.jpg"
                w, h = sizes[k % len(sizes)]
                k += 1
                arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                Image.fromarray(arr).save(folder / "images" / name, quality=90)
                rows.append(f"{name},{label}")
                layout[split].setdefault(label, []).append(name)
        rng.shuffle(rows[1:])
        (csv_dir / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return layout


def test_real_ravi_csvs_pass_md5_and_counts(fewshot_data):
    for split, (classes, per) in EXPECTED_COUNTS.items():
        table = read_split_csv(fewshot_data / "mini-imagenet" / "splits" / "ravi" / f"{split}.csv", MD5[f"{split}.csv"])
        assert len(table) == classes and all(len(v) == per for v in table.values())
        assert all(f.startswith(label) and f.endswith(".jpg") for label, files in table.items() for f in files)


def test_real_csvs_without_images_say_what_is_missing(fewshot_data, tmp_path):
    total = sum(c * n for c, n in EXPECTED_COUNTS.values())  # 100 classes x 600
    assert total == 60000
    with pytest.raises(DataError, match=f"{total} images listed in the CSVs are missing from .*images"):
        prepare_mini_imagenet(fewshot_data / "mini-imagenet", tmp_path, quiet=True)
    assert list(tmp_path.rglob("*.h5")) == []


def test_synthetic_store_matches_pil_decoding(tmp_path):
    layout = _make(tmp_path / "src", np.random.default_rng(0), sizes=((84, 84), (100, 90)), csv_in_splits=True)
    out = prepare("mini-imagenet", tmp_path / "src", tmp_path / "root", md5=NO_MD5, expected_counts=SMALL, quiet=True)
    assert out == tmp_path / "root" / "mini-imagenet" / "mini-imagenet-84.h5"
    for split, classes in layout.items():
        s = load_split("mini-imagenet", split, tmp_path / "root")
        assert s.data.shape == (sum(len(v) for v in classes.values()), 3, 84, 84) and s.data.dtype == torch.uint8
        assert list(s.class_names) == sorted(classes)
        for c, label in enumerate(s.class_names):
            for j, name in enumerate(sorted(classes[label])):
                with Image.open(tmp_path / "src" / "images" / name) as im:
                    im = im.convert("RGB")
                    if im.size != (84, 84):
                        im = im.resize((84, 84), Image.LANCZOS)
                    want = np.asarray(im).transpose(2, 0, 1)
                np.testing.assert_array_equal(s.data[int(s.class_offsets[c]) + j].numpy(), want)


def test_synthetic_bad_inputs_fail_cleanly(tmp_path):
    rng = np.random.default_rng(1)
    src = tmp_path / "src"
    layout = _make(src, rng)
    root = tmp_path / "root"

    def fails(match, **kw):
        with pytest.raises(DataError, match=match) as info:
            prepare_mini_imagenet(src, root, quiet=True, **{"md5": NO_MD5, "expected_counts": SMALL, **kw})
        assert "\n" not in str(info.value)
        assert not root.exists() or [p for p in root.rglob("*") if p.is_file()] == []

    fails("train.csv has md5 .* expected 9525e1538f67719f18f1936bf8d0782d", md5={})  # synthetic CSVs are not Ravi's
    fails("val.csv lists 2 classes, expected 16", expected_counts={**SMALL, "val": (16, 4)})
    victim = layout["test"][sorted(layout["test"])[-1]][-1]  # decoded last: a failure mid-way through the store
    (src / "images" / victim).write_bytes(b"not a jpeg")
    fails(f"{victim} is not a readable image")
    (src / "images" / victim).unlink()
    fails(f"1 images listed in the CSVs are missing .*{victim}")
    (src / "test.csv").write_text("file,label\n")
    fails("must start with the header 'filename,label'")
    (src / "test.csv").unlink()
    fails("no test.csv in")
    with pytest.raises(DataError, match="cannot be downloaded automatically"):
        prepare_mini_imagenet(None, root)
    with pytest.raises(DataError, match="no mini-imagenet store at .*fewshot prepare mini-imagenet --source DIR"):
        load_split("mini-imagenet", "train", root)


def test_decode_jpeg_grayscale_becomes_rgb():
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((10, 12), 77, dtype=np.uint8)).save(buf, format="PNG")
    out = decode_jpeg(buf.getvalue(), 8)
    assert out.shape == (3, 8, 8) and (out == 77).all()

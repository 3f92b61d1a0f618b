"""Format 1 (Ravi & Larochelle): ``images/`` + CSVs and ``{train,val,test}/<wnid>/``, on synthetic
JPEGs."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from episodes import load_split, prepare
from episodes.errors import DataError
from episodes.mini_imagenet import EXPECTED_COUNTS, prepare_mini_imagenet, read_split_csv

from .fixtures import COUNTS, make_fixture, write_csvs, write_ravi_csv, write_ravi_folders

LOOSE = {"strict": False, "expected_counts": COUNTS, "quiet": True, "workers": 1}


def test_real_csvs_without_images_say_what_is_missing(fewshot_data, tmp_path):
    assert sum(c * n for c, n in EXPECTED_COUNTS.values()) == 60000
    with pytest.raises(DataError,
                       match="holds no known mini-ImageNet format .it has the Ravi CSVs in "
                             ".*splits/ravi "
                             "but no images"):
        prepare_mini_imagenet(fewshot_data / "mini-imagenet", tmp_path, quiet=True)
    assert list(tmp_path.rglob("*.h5")) == []


def test_real_csvs_pass_the_strict_md5_then_missing_images_are_counted(fewshot_data, tmp_path):
    fx = make_fixture(0)
    src = write_ravi_csv(tmp_path / "src", fx)
    have = {p.name for p in (src / "images").iterdir()}
    listed = set()
    for split in ("train", "val", "test"):
        real = fewshot_data / "mini-imagenet" / "splits" / "ravi" / f"{split}.csv"
        listed |= {f for files in read_split_csv(real).values() for f in files}
        shutil.copy(real, src / f"{split}.csv")
    # some fixture names are real ones
    assert len(listed) == 60000 and 0 < len(listed & have) < len(have)
    with pytest.raises(DataError,
                       match=f"{len(listed - have)} images listed in the CSVs are missing from "
                             ".*images"):
        prepare_mini_imagenet(src, tmp_path / "root", quiet=True)


def test_odd_sizes_and_grey_images_are_resized_like_pil(tmp_path):
    fx = make_fixture(1)
    src = write_ravi_csv(tmp_path / "src", fx)
    write_csvs(src / "splits" / "ravi", fx)  # CSVs may also live in splits/ravi/
    for f in ("train.csv", "val.csv", "test.csv"):
        (src / f).unlink()
    files = sorted((src / "images").iterdir())
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 100, 3), dtype=np.uint8)).save(files[0],
                                                                             format="JPEG")
    # grey, PNG bytes
    Image.fromarray(rng.integers(0, 256, (84, 84), dtype=np.uint8)).save(files[1], format="PNG")
    out = prepare("mini-imagenet", src, tmp_path / "root", **LOOSE)
    assert out == tmp_path / "root" / "mini-imagenet" / "mini-imagenet-84.h5"
    for split, classes in fx.images.items():
        s = load_split("mini-imagenet", split, tmp_path / "root")
        assert s.data.dtype == torch.uint8 and s.data.shape == (sum(map(len, classes.values())), 3,
                                                                84, 84)
        assert list(s.class_names) == sorted(classes)
        for c, wnid in enumerate(s.class_names):
            for j, k in enumerate(fx.indices[split][wnid]):
                with Image.open(src / "images" / fx.ravi_name(wnid, k)) as im:
                    im = im.convert("RGB")
                    if im.size != (84, 84):
                        im = im.resize((84, 84), Image.LANCZOS)
                    want = np.asarray(im).transpose(2, 0, 1)
                np.testing.assert_array_equal(s.data[int(s.class_offsets[c]) + j].numpy(), want)


def _fails(src, root, match, **kw):
    with pytest.raises(DataError, match=match) as info:
        prepare_mini_imagenet(src, root, **{**LOOSE, **kw})
    assert "\n" not in str(info.value)
    assert not root.exists() or [p for p in root.rglob("*") if p.is_file()] == []


def test_csv_layout_bad_inputs_fail_cleanly(tmp_path):
    fx = make_fixture(2)
    src, root = write_ravi_csv(tmp_path / "src", fx), tmp_path / "root"
    _fails(src, root, "train.csv has md5 .* expected 9525e1538f67719f18f1936bf8d0782d", strict=True)
    _fails(src, root, r"split val has 2 classes, expected 16",
           expected_counts={**COUNTS, "val": (16, 5)})
    wnid = sorted(fx.images["test"])[-1]
    # decoded last: a failure mid-way through the store
    victim = fx.ravi_name(wnid, fx.indices["test"][wnid][-1])
    (src / "images" / victim).write_bytes(b"not a jpeg")
    _fails(src, root, f"{victim} is not a readable image")
    (src / "images" / victim).unlink()
    _fails(src, root, f"1 images listed in the CSVs are missing .*{victim}")
    (src / "test.csv").write_text("file,label\n")
    _fails(src, root, "must start with the header 'filename,label'")
    (src / "test.csv").unlink()
    _fails(src, root, "has no test.csv: put all three Ravi split CSVs")
    with pytest.raises(DataError, match="cannot be downloaded automatically"):
        prepare_mini_imagenet(None, root)
    with pytest.raises(DataError,
                       match="no mini-imagenet store at .*fewshot prepare mini-imagenet --source "
                             "PATH"):
        load_split("mini-imagenet", "train", root)


def test_folder_layout_checks_class_names_and_counts(tmp_path):
    fx = make_fixture(3)
    src, root = write_ravi_folders(tmp_path / "src", fx), tmp_path / "root"
    wnid = sorted(fx.images["val"])[0]
    extra = src / "val" / wnid / "n0185567299999999.jpg"
    shutil.copy(next((src / "val" / wnid).iterdir()), extra)
    _fails(src, root, f"class {wnid} of split val has 6 images, expected 5")
    extra.unlink()
    (src / "test" / "cats").mkdir()
    _fails(src, root, "cats is not named by a WordNet id")
    (src / "test" / "cats").rmdir()
    shutil.rmtree(src / "val")
    _fails(src, root, "has no val/ folder")

"""The ILSVRC-2012 builder: Ravi index k = the k-th training image in numeric <n> order; missing
data is named."""
import shutil

import pytest

from episodes.errors import DataError
from episodes.mini_imagenet import RAVI_CLASSES, prepare_mini_imagenet
from episodes.mini_imagenet.ilsvrc import read_ilsvrc, sorted_class_files

from .fixtures import COUNTS, make_fixture, write_csvs, write_ilsvrc

N_FIXTURE = sum(c for c, _ in COUNTS.values())
N_RAVI = sum(map(len, RAVI_CLASSES.values()))


def test_class_files_sort_numerically_and_ignore_other_files(tmp_path):
    d = tmp_path / "n01532829"
    d.mkdir()
    for name in ("n01532829_10.JPEG", "n01532829_9.JPEG", "n01532829_100.jpeg", "n01558993_1.JPEG",
                 "notes.txt"):
        (d / name).write_bytes(b"x")
    assert [p.name for p in sorted_class_files(d)] == ["n01532829_9.JPEG", "n01532829_10.JPEG",
                                                       "n01532829_100.jpeg"]


def test_csv_entries_map_to_the_numerically_sorted_files(tmp_path):
    fx = make_fixture(0)
    src = write_ilsvrc(tmp_path / "imagenet", fx)
    write_csvs(tmp_path / "csv", fx)
    data = read_ilsvrc(src, strict=False, splits_dir=tmp_path / "csv")
    for split, classes in fx.indices.items():
        for wnid, ks in classes.items():
            files = sorted((src / "train" / wnid).iterdir(),
                           key=lambda p: int(p.stem.split("_")[1]))
            assert data.splits[split][wnid] == [files[k - 1] for k in ks]


def test_missing_class_folder_or_too_few_files_are_named(tmp_path):
    fx = make_fixture(1)
    src = write_ilsvrc(tmp_path / "imagenet", fx)
    write_csvs(src, fx)  # CSVs beside train/ are found too
    kw = {**fx.prepare_kw}
    wnid = sorted(fx.indices["val"])[0]
    k = fx.indices["val"][wnid][-1]
    files = sorted_class_files(src / "train" / wnid)
    for extra in files[k - 1:]:
        extra.unlink()
    with pytest.raises(DataError,
                       match=f"entry '{wnid}{k:08d}.jpg' is image {k} of {wnid}, but .* has "
                             f"{k - 1} "
                             "<wnid>_<n>.JPEG files"):
        prepare_mini_imagenet(src, tmp_path / "root", **kw)
    shutil.rmtree(src / "train" / wnid)
    with pytest.raises(DataError,
                       match=f"lacks 1 of the {N_FIXTURE} class folders the CSVs need .e.g. "
                             f"{wnid}/ for "
                             "val.csv."):
        prepare_mini_imagenet(src, tmp_path / "root", **kw)


def test_real_ravi_csvs_pass_md5_and_the_first_absent_class_is_named(fewshot_data, tmp_path):
    fx = make_fixture(2)
    src = write_ilsvrc(tmp_path / "imagenet", fx)
    with pytest.raises(DataError,
                       match=f"lacks {N_RAVI - N_FIXTURE} of the {N_RAVI} class folders the CSVs "
                             "need .e.g. "
                             "n01749939/ for train.csv.: extract the full ILSVRC-2012"):
        prepare_mini_imagenet(src, tmp_path / "root",
                              splits=fewshot_data / "mini-imagenet" / "splits" / "ravi",
                              quiet=True)

"""Format detection: each layout is recognised by its file names; mixed or unknown folders are one
clear error."""
import shutil

import pytest

from episodes.errors import DataError
from episodes.mini_imagenet import FORMATS, detect_format

from .fixtures import WRITERS, make_fixture, write_cache_pickles, write_csvs, write_torchmeta


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    fx, base = make_fixture(0), tmp_path_factory.mktemp("sources")
    return {fmt: write(base / fmt, fx) for fmt, write in WRITERS.items()}


def test_every_layout_is_detected(sources):
    assert set(sources) == set(FORMATS)
    for fmt, folder in sources.items():
        assert detect_format(folder) == (fmt, folder)


def test_a_file_stands_for_its_folder_and_ilsvrc_train_folder_works(sources):
    folder = sources["metaopt-pickle"]
    assert detect_format(folder / "miniImageNet_category_split_val.pickle") == ("metaopt-pickle",
                                                                                folder)
    assert detect_format(sources["ilsvrc"] / "train") == ("ilsvrc", sources["ilsvrc"] / "train")


def test_ilsvrc_tree_with_csvs_beside_it_is_still_ilsvrc(sources, tmp_path):
    folder = shutil.copytree(sources["ilsvrc"], tmp_path / "ilsvrc")
    write_csvs(folder, make_fixture(0))
    assert detect_format(folder) == ("ilsvrc", folder)


def test_mixed_formats_list_what_was_found(tmp_path):
    fx = make_fixture(1)
    write_cache_pickles(tmp_path, fx)
    write_torchmeta(tmp_path, fx)
    with pytest.raises(DataError) as info:
        detect_format(tmp_path)
    msg = str(info.value)
    assert "mixes several mini-ImageNet formats" in msg and "\n" not in msg
    assert "cache-pickle (mini-imagenet-cache-test.pkl, mini-imagenet-cache-train.pkl" in msg
    assert ("torchmeta (test_data.hdf5" in msg
            and "point --source at a folder holding only one" in msg)


def test_unknown_layout_lists_what_each_format_needs(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError) as info:
        detect_format(tmp_path)
    msg = str(info.value)
    assert "holds no known mini-ImageNet format; bring one of" in msg and "\n" not in msg
    for fmt, needs in FORMATS.items():
        assert f"{fmt}: {needs}" in msg
    with pytest.raises(DataError, match="is not a folder or a file"):
        detect_format(tmp_path / "missing")


def test_split_folders_of_ilsvrc_style_are_not_ravi(tmp_path):
    # val/ and test/ hold Ravi-style folders but train/ holds <wnid>_<n>.JPEG: the ILSVRC builder
    # wins only via train/
    (tmp_path / "train" / "n01532829").mkdir(parents=True)
    (tmp_path / "train" / "n01532829" / "n01532829_10.JPEG").write_bytes(b"x")
    assert detect_format(tmp_path)[0] == "ilsvrc"
    (tmp_path / "train" / "n01532829" / "n01532829_10.JPEG").unlink()
    (tmp_path / "train" / "n01532829" / "n0153282900000005.jpg").write_bytes(b"x")
    assert detect_format(tmp_path)[0] == "ravi-folders"

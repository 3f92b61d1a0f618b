"""Format 3, MetaOptNet's Python 2 pickles: labels -> wnids via catname2label; wrong images or
labels are errors."""
import pickle

import numpy as np
import pytest

from episodes.errors import DataError
from episodes.mini_imagenet import prepare_mini_imagenet
from episodes.mini_imagenet.metaopt_pickle import FILE_NAMES, read_metaopt_pickles

from .fixtures import make_fixture, py2_pickle_bytes, write_metaopt_pickles


def test_python2_files_read_by_label(tmp_path):
    fx = make_fixture(0)
    src = write_metaopt_pickles(tmp_path, fx)
    assert b"numpy.core.multiarray" in (src / FILE_NAMES["train"]).read_bytes()
    data = read_metaopt_pickles(src)
    for split, classes in fx.images.items():
        assert list(data.splits[split]) == sorted(classes)
        for wnid, ims in classes.items():
            np.testing.assert_array_equal(data.splits[split][wnid], ims)


def test_wrong_images_labels_and_missing_files(tmp_path):
    fx = make_fixture(1)
    src = write_metaopt_pickles(tmp_path / "src", fx)
    kw, root = fx.prepare_kw, tmp_path / "root"
    path = src / FILE_NAMES["val"]
    blob = pickle.loads(path.read_bytes(), encoding="latin1")
    path.write_bytes(py2_pickle_bytes({**blob, "data": blob["data"].astype(np.float32)}))
    with pytest.raises(DataError,
                       match=r"_val.pickle data is float32 \[10, 84, 84, 3\], expected uint8"):
        prepare_mini_imagenet(src, root, **kw)
    path.write_bytes(py2_pickle_bytes({**blob, "labels": blob["labels"][:-1]}))
    with pytest.raises(DataError, match="has 10 images but 9 labels"):
        prepare_mini_imagenet(src, root, **kw)
    path.write_bytes(py2_pickle_bytes({**blob, "labels": [99] + blob["labels"][1:]}))
    with pytest.raises(DataError, match="has label 99, which catname2label does not name"):
        prepare_mini_imagenet(src, root, **kw)
    path.unlink()
    with pytest.raises(DataError,
                       match="has no miniImageNet_category_split_val.pickle: bring the three "
                             "MetaOptNet "
                             "pickles"):
        prepare_mini_imagenet(src, root, **kw)
    assert not root.exists()


def test_unused_catname2label_entries_are_not_classes(tmp_path):
    fx = make_fixture(2)
    src = write_metaopt_pickles(tmp_path, fx)
    path = src / FILE_NAMES["test"]
    blob = pickle.loads(path.read_bytes(), encoding="latin1")
    path.write_bytes(
        py2_pickle_bytes({**blob, "catname2label": {**blob["catname2label"], "n99999999": 1000}}))
    assert list(read_metaopt_pickles(src).splits["test"]) == sorted(fx.images["test"])

"""Format 4, torchmeta HDF5 + JSON labels: classes must agree, images must be uint8 84x84x3."""
import json

import h5py
import numpy as np
import pytest

from episodes.errors import DataError
from episodes.mini_imagenet import prepare_mini_imagenet
from episodes.mini_imagenet.torchmeta_h5 import read_torchmeta

from .fixtures import make_fixture, write_torchmeta


def test_reads_one_dataset_per_class(tmp_path):
    fx = make_fixture(0)
    data = read_torchmeta(write_torchmeta(tmp_path, fx))
    for split, classes in fx.images.items():
        assert list(data.splits[split]) == sorted(classes)
        for wnid, ims in classes.items():
            np.testing.assert_array_equal(data.splits[split][wnid], ims)


def test_disagreeing_labels_wrong_shapes_and_missing_files(tmp_path):
    fx = make_fixture(1)
    src = write_torchmeta(tmp_path / "src", fx)
    kw, root = fx.prepare_kw, tmp_path / "root"
    labels = json.loads((src / "val_labels.json").read_text())
    (src / "val_labels.json").write_text(json.dumps(labels + ["n99999999"]))
    with pytest.raises(DataError, match="classes and val_labels.json disagree .e.g. n99999999."):
        prepare_mini_imagenet(src, root, **kw)
    (src / "val_labels.json").write_text(json.dumps(labels))
    with h5py.File(src / "test_data.hdf5", "a") as f:
        wnid = sorted(f["datasets"])[0]
        del f["datasets"][wnid]
        f["datasets"].create_dataset(wnid, data=np.zeros((5, 84, 84), np.uint8))
    with pytest.raises(DataError,
                       match=rf"datasets/{wnid} is uint8 \[5, 84, 84\], expected uint8 \[N, 84, "
                             r"84, 3\]"):
        prepare_mini_imagenet(src, root, **kw)
    (src / "train_labels.json").unlink()
    with pytest.raises(DataError, match="has no train_labels.json"):
        prepare_mini_imagenet(src, root, **kw)
    assert not root.exists()

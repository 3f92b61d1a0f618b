"""Format 2, the cache pickles: val/validation names, wrong image size, bad class_dict."""
import pickle

import numpy as np
import pytest

from episodes.errors import DataError
from episodes.mini_imagenet import prepare_mini_imagenet
from episodes.mini_imagenet.cache_pickle import read_cache_pickles

from .fixtures import make_fixture, write_cache_pickles


@pytest.mark.parametrize("val_name, protocol", [("val", 2), ("validation", 5)])
def test_both_val_names_and_protocols_read(tmp_path, val_name, protocol):
    fx = make_fixture(0)
    data = read_cache_pickles(
        write_cache_pickles(tmp_path, fx, val_name=val_name, protocol=protocol))
    for split, classes in fx.images.items():
        assert list(data.splits[split]) == sorted(classes)
        for wnid, ims in classes.items():
            np.testing.assert_array_equal(data.splits[split][wnid], ims)


def test_missing_duplicate_and_malformed_files(tmp_path):
    fx = make_fixture(1)
    src = write_cache_pickles(tmp_path / "src", fx)
    kw, root = fx.prepare_kw, tmp_path / "root"
    (src / "mini-imagenet-cache-val.pkl").write_bytes(
        (src / "mini-imagenet-cache-validation.pkl").read_bytes())
    with pytest.raises(DataError,
                       match="has both mini-imagenet-cache-val.pkl and "
                             "mini-imagenet-cache-validation.pkl"):
        prepare_mini_imagenet(src, root, **kw)
    (src / "mini-imagenet-cache-val.pkl").unlink()
    blob = pickle.loads((src / "mini-imagenet-cache-test.pkl").read_bytes())
    small = {"image_data": blob["image_data"][:, :32, :32], "class_dict": blob["class_dict"]}
    (src / "mini-imagenet-cache-test.pkl").write_bytes(pickle.dumps(small))
    with pytest.raises(DataError,
                       match=r"cache-test.pkl image_data is uint8 \[10, 32, 32, 3\], expected "
                             r"uint8 \[N, "
                             r"84, 84, 3\]"):
        prepare_mini_imagenet(src, root, **kw)
    bad = {"image_data": blob["image_data"], "class_dict": {"n01930112": [0, 99]}}
    (src / "mini-imagenet-cache-test.pkl").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError,
                       match=r"class_dict\['n01930112'\] indexes outside image_data \(N=10\)"):
        prepare_mini_imagenet(src, root, **kw)
    (src / "mini-imagenet-cache-test.pkl").write_bytes(pickle.dumps({"images": 1}))
    with pytest.raises(DataError,
                       match=r"holds \['images'\], expected a dict with 'image_data' and "
                             r"'class_dict'"):
        prepare_mini_imagenet(src, root, **kw)
    (src / "mini-imagenet-cache-test.pkl").unlink()
    with pytest.raises(DataError,
                       match="has no mini-imagenet-cache-test.pkl: bring all three cache pickles"):
        prepare_mini_imagenet(src, root, **kw)
    assert not root.exists()

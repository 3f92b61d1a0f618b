"""The restricted unpickler: data-only pickles load exactly; any other global is refused before it
runs."""
import builtins
import os
import pickle

import numpy as np
import pytest

from episodes.errors import DataError
from episodes.safe_pickle import ALLOWED, load_data_pickle

from .mini_imagenet.fixtures import py2_pickle_bytes


def _data() -> dict:
    rng = np.random.default_rng(0)
    return {
        "image_data": rng.integers(0, 256, (3, 5, 4, 3), dtype=np.uint8),
        "floats": np.asfortranarray(rng.standard_normal((4, 6)).astype(np.float32)),
        "class_dict": {"n01532829": [0, 2], "n01558993": [1]},
        "labels": [np.int64(3), 7, -1, 2.5, None, True],
        "names": ("a", "ü", b"\x00\xff"),
        "empty": np.zeros((0, 84, 84, 3), dtype=np.uint8),
    }


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_arrays_and_containers_round_trip_at_every_protocol(tmp_path, protocol):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(_data(), protocol=protocol))
    assert _equal(load_data_pickle(path), pickle.loads(path.read_bytes()))
    assert _equal(load_data_pickle(path), _data())


def test_python2_pickle_loads_with_latin1(tmp_path):
    arr = np.arange(2 * 84 * 84 * 3, dtype=np.int64).reshape(2, 84, 84, 3).astype(np.uint8)
    blob = py2_pickle_bytes({"data": arr, "labels": [0, 1], "catname2label": {"n01532829": 0}})
    assert b"numpy.core.multiarray\n_reconstruct" in blob and b"_codecs" not in blob
    (tmp_path / "py2.pickle").write_bytes(blob)
    out = load_data_pickle(tmp_path / "py2.pickle", encoding="latin1")
    np.testing.assert_array_equal(out["data"], arr)
    assert out["labels"] == [0, 1] and out["catname2label"] == {"n01532829": 0}


def test_allowlist_is_only_numpy_reconstruction_and_codecs():
    assert {m.split(".")[0] for m, _ in ALLOWED} == {"numpy", "_codecs", "builtins", "__builtin__"}
    assert {n for _, n in ALLOWED} == {"_reconstruct", "scalar", "_frombuffer", "ndarray", "dtype",
                                       "encode", "bytes"}
    assert {n for m, n in ALLOWED if m in ("builtins", "__builtin__")} == {"bytes"}


class _System:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _Open:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (builtins.open, (str(self.target), "w"))


@pytest.mark.parametrize("payload, global_name", [(_System, f"{os.system.__module__}.system"),
                                                  (_Open, f"{builtins.open.__module__}.open")])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_code_running_pickles_are_refused_before_they_run(tmp_path, payload, global_name, protocol):
    target = tmp_path / "pwned"
    blob = pickle.dumps({"image_data": np.zeros((1, 2), np.uint8), "evil": payload(target)},
                        protocol=protocol)
    (tmp_path / "x.pkl").write_bytes(blob)
    with pytest.raises(DataError,
                       match=f"refers to '{global_name}', which a data-only pickle never "
                             "needs") as info:
        load_data_pickle(tmp_path / "x.pkl")
    assert "\n" not in str(info.value)
    assert not target.exists()


def test_object_arrays_cannot_smuggle_globals(tmp_path):
    target = tmp_path / "pwned"
    arr = np.empty(1, dtype=object)
    arr[0] = _Open(target)
    (tmp_path / "x.pkl").write_bytes(pickle.dumps(arr, protocol=2))
    with pytest.raises(DataError, match=f"refers to .{builtins.open.__module__}.open."):
        load_data_pickle(tmp_path / "x.pkl")
    assert not target.exists()


def test_corrupt_or_missing_pickle_is_a_data_error(tmp_path):
    good = pickle.dumps(_data(), protocol=4)
    (tmp_path / "cut.pkl").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cut.pkl is not a readable pickle .*corrupt"):
        load_data_pickle(tmp_path / "cut.pkl")
    with pytest.raises(DataError, match="cannot read .*missing.pkl"):
        load_data_pickle(tmp_path / "missing.pkl")

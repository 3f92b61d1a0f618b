"""load_split: names, splits, errors, devices, rotation augmentation for any dataset."""
import numpy as np
import pytest
import torch
from PIL import Image

from episodes import DATASETS, load_split, prepare
from episodes.errors import DataError
from episodes.omniglot import load_omniglot
from episodes.registry import rotate_classes
from episodes.types import ClassSplit


@pytest.fixture(scope="module")
def mnist_root(fewshot_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist-root")
    prepare("mnist", fewshot_data / "mnist", root, quiet=True)
    return root


def test_dataset_names():
    assert set(DATASETS) == {"omniglot", "mnist", "fashion-mnist", "mini-imagenet"}
    assert DATASETS["mini-imagenet"].splits == ("train", "val",
                                                "test") and DATASETS[
                                                    "mini-imagenet"].default_size == 84
    assert DATASETS["omniglot"].splits == ("train", "val", "test", "trainval", "maml-train",
                                           "maml-val", "maml-test",
                                           "maml-trainval", "background", "evaluation")
    assert DATASETS["mnist"].splits == DATASETS["fashion-mnist"].splits == ("train", "test")


def test_unknown_names_list_the_valid_ones(tmp_path):
    with pytest.raises(DataError,
                       match="unknown dataset 'omniglott': choose one of omniglot, mnist, "
                             "fashion-mnist, "
                             "mini-imagenet"):
        load_split("omniglott", "train", tmp_path)
    with pytest.raises(DataError, match="unknown mnist split 'val': choose one of train, test"):
        load_split("mnist", "val", tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        prepare("cifar", None, tmp_path)


def test_missing_store_names_the_prepare_command(tmp_path):
    for dataset in DATASETS:
        size = DATASETS[dataset].default_size
        store = tmp_path / dataset / f"{dataset}-{size}.h5"
        with pytest.raises(DataError,
                           match=f"no {dataset} store at {store}: run `fewshot prepare {dataset} "
                                 "(--source "
                                 f"(DIR|PATH) )?--root {tmp_path}`"):
            load_split(dataset, "train", tmp_path)


def test_default_root_is_fewshot_data(monkeypatch, omniglot_root):
    monkeypatch.setenv("FEWSHOT_DATA", str(omniglot_root))
    split = load_split("omniglot", "val")
    assert isinstance(split, ClassSplit) and split.num_classes == 688


def test_load_split_is_pure_and_matches_the_reader(omniglot_root):
    a = load_split("omniglot", "test", omniglot_root, device="cpu")
    b = load_split("omniglot", "test", omniglot_root)
    want = load_omniglot("test", omniglot_root)
    assert torch.equal(a.data, want.data) and torch.equal(a.class_offsets, want.class_offsets)
    assert a.data.dtype == torch.uint8 and a.data.device.type == "cpu" and a.name == "omniglot/test"
    a.data.zero_()
    assert torch.equal(b.data, want.data)  # independent tensors, nothing cached and shared


def test_corrupt_store_says_how_to_rebuild(tmp_path):
    path = tmp_path / "omniglot" / "omniglot-28.h5"
    path.parent.mkdir()
    path.write_bytes(b"\x89HDF garbage" * 100)
    with pytest.raises(DataError,
                       match=r"not a readable HDF5 file.*fewshot prepare omniglot --root .* "
                             r"--force") as info:
        load_split("omniglot", "train", tmp_path)
    assert "\n" not in str(info.value)


def test_mnist_with_rotations(mnist_root):
    plain = load_split("mnist", "test", mnist_root)
    rot = load_split("mnist", "test", mnist_root, rotations=(0, 90))
    assert rot.num_classes == 20 and rot.class_names[:3] == ["0/rot000", "0/rot090", "1/rot000"]
    n0 = int(plain.counts[0])
    assert torch.equal(rot.data[:n0], plain.data[:n0])
    want = np.stack(
        [np.asarray(Image.fromarray(im[0].numpy()).rotate(90))[None] for im in plain.data[:n0]])
    np.testing.assert_array_equal(rot.data[n0 : 2 * n0].numpy(), want)
    assert torch.equal(rot.counts[::2], plain.counts) and torch.equal(rot.counts[1::2],
                                                                      plain.counts)
    with pytest.raises(DataError, match="multiples of 90"):
        rotate_classes(plain, (30,))
    with pytest.raises(DataError, match="non-empty"):
        rotate_classes(plain, ())


def test_device_argument_moves_the_split(mnist_root):
    # "cuda" goes through the same .to()
    s = load_split("mnist", "test", mnist_root, device=torch.device("cpu"))
    assert s.data.device.type == "cpu" and s.class_offsets.device.type == "cpu"
    assert s.data.shape == (10000, 1, 28, 28)


def test_download_true_fetches_the_published_files_and_builds_the_store_once(fewshot_data,
                                                                             mnist_root, tmp_path,
                                                                             monkeypatch):
    import dataclasses

    from episodes import idx
    from episodes.download import md5_file
    from tests.episodes.test_download import serve

    # The "published" MNIST: a local HTTP server serving the real files, with their md5s as the
    # official ones.
    with serve(fewshot_data / "mnist") as url:
        published = dataclasses.replace(idx.MNIST, base_url=url,
                                        md5={n: md5_file(fewshot_data / "mnist" / n)
                                             for n in idx.MNIST.md5})
        monkeypatch.setitem(idx.IDX_DATASETS, "mnist", published)
        root = tmp_path / "fresh"
        # the default stays: no download, a clear error
        with pytest.raises(DataError, match="no mnist store"):
            load_split("mnist", "test", root)
        got = load_split("mnist", "test", root, download=True)
    # built by `prepare --source` from the same files
    want = load_split("mnist", "test", mnist_root)
    assert torch.equal(got.data, want.data) and torch.equal(got.class_offsets, want.class_offsets)
    for name in idx.MNIST.md5:  # the archives were downloaded into the data root, byte for byte
        assert (root / "mnist" / name).read_bytes() == (fewshot_data / "mnist" / name).read_bytes()
    store = root / "mnist" / "mnist-28.h5"
    stamp = store.stat().st_mtime_ns
    # server gone: the store is used, nothing fetched
    again = load_split("mnist", "train", root, download=True)
    assert again.data.shape[0] == 60000 and store.stat().st_mtime_ns == stamp


def test_download_true_for_mini_imagenet_says_how_to_prepare_it(tmp_path):
    with pytest.raises(DataError, match="mini-ImageNet images cannot be downloaded automatically"):
        load_split("mini-imagenet", "test", tmp_path, download=True)


def test_a_local_source_may_be_the_data_root_above_the_datasets_folder(fewshot_data, tmp_path):
    """``--source`` given the folder holding ``mnist/`` (as a data root is laid out) finds the files
    inside."""
    store = prepare("mnist", fewshot_data, tmp_path / "root", quiet=True)
    assert store.is_file() and load_split("mnist", "test", tmp_path / "root").num_classes == 10

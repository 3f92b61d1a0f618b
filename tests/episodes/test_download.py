"""Downloads for real: a local HTTP server serves $FEWSHOT_DATA/omniglot (a re-packed mirror)."""
import contextlib
import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest

from episodes.download import download, fetch, join_url, md5_file
from episodes.errors import DataError
from episodes.idx import MNIST, load_idx_split, prepare_mnist
from episodes.omniglot import MD5, prepare_omniglot
from episodes.store import Store


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(folder):
    """Serve ``folder`` over HTTP on a free local port; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def mirror(fewshot_data):
    """Base URL of a local HTTP server serving the Omniglot folder (archives + splits/vinyals/)."""
    with serve(fewshot_data / "omniglot") as url:
        yield url


def test_md5_file_and_join_url(tmp_path):
    data = bytes(range(256)) * 1000
    (tmp_path / "f").write_bytes(data)
    assert md5_file(tmp_path / "f") == hashlib.md5(data).hexdigest()
    assert join_url("http://h/a", "b.zip") == join_url("http://h/a/",
                                                       "/b.zip") == "http://h/a/b.zip"
    with pytest.raises(DataError, match="cannot read"):
        md5_file(tmp_path / "missing")


def test_official_md5_rejects_repacked_archive_and_leaves_nothing(mirror, tmp_path):
    dest = tmp_path / "dl" / "images_evaluation.zip"
    with pytest.raises(DataError,
                       match="md5 mismatch.*expected 6b91aef0f799c5bb55b94e3f2daec811") as info:
        download(join_url(mirror, "images_evaluation.zip"), dest, MD5["images_evaluation.zip"],
                 quiet=True)
    assert "\n" not in str(info.value)
    assert list(dest.parent.iterdir()) == []  # neither the file nor a temp file


def test_download_with_mirror_md5_succeeds(mirror, fewshot_data, tmp_path):
    original = fewshot_data / "omniglot" / "images_evaluation.zip"
    dest = download(join_url(mirror, "images_evaluation.zip"), tmp_path / "images_evaluation.zip",
                    md5_file(original),
                    quiet=True)
    assert dest.read_bytes() == original.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images_evaluation.zip"]


def test_http_error_and_unreachable_host(mirror, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download(join_url(mirror, "nope.zip"), tmp_path / "nope.zip", None, quiet=True)
    with pytest.raises(DataError, match="download of http://127.0.0.1:9/x failed"):
        download("http://127.0.0.1:9/x", tmp_path / "x", None, quiet=True, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_fetch_reuses_a_matching_file_and_refuses_a_wrong_one(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"hello")
    unreachable = "http://127.0.0.1:9/"  # any download attempt would fail
    assert fetch(unreachable, "a.txt", tmp_path, hashlib.md5(b"hello").hexdigest(),
                 quiet=True) == tmp_path / "a.txt"
    with pytest.raises(DataError, match="delete it to download it again"):
        fetch(unreachable, "a.txt", tmp_path, "0" * 32, quiet=True)
    assert (tmp_path / "a.txt").read_bytes() == b"hello"


@pytest.mark.slow
def test_prepare_from_url(mirror, fewshot_data, omniglot_root, tmp_path):
    """``--source URL``: official md5s refuse the mirror; the mirror's own md5s give the same store
    as --source DIR."""
    with pytest.raises(DataError, match="md5 mismatch"):
        prepare_omniglot(mirror, tmp_path / "a", quiet=True)
    leftovers = [p for p in (tmp_path / "a").rglob("*") if p.is_file()]
    assert leftovers == []
    table = {n: md5_file(fewshot_data / "omniglot" / n)
             for n in ("images_background.zip", "images_evaluation.zip")}
    out = prepare_omniglot(mirror, tmp_path / "b", quiet=True, md5=table)
    assert out == tmp_path / "b" / "omniglot" / "omniglot-28.h5"
    # The downloaded archives and split lists are kept beside the store, byte-identical to the
    # mirror's.
    for rel in ("images_background.zip", "images_evaluation.zip", "splits/vinyals/train.txt",
                "splits/vinyals/trainval.txt"):
        assert (out.parent / rel).read_bytes() == (fewshot_data / "omniglot" / rel).read_bytes()
    with Store(out) as got, Store(omniglot_root / "omniglot" / "omniglot-28.h5") as want:
        for part in ("background", "evaluation"):
            np.testing.assert_array_equal(got.part(part).images, want.part(part).images)
            assert got.part(part).class_names == want.part(part).class_names
        assert got.strings("splits/vinyals/test") == want.strings("splits/vinyals/test")


def test_prepare_mnist_from_url(fewshot_data, tmp_path):
    """The local .gz files are re-compressed: the published md5s refuse them, their own md5s
    pass."""
    with serve(fewshot_data / "mnist") as url:
        with pytest.raises(DataError,
                           match="md5 mismatch .*expected "
                                 f"{MNIST.md5['train-images-idx3-ubyte.gz']}"):
            prepare_mnist("mnist", url, tmp_path / "a", quiet=True)
        assert [p for p in (tmp_path / "a").rglob("*") if p.is_file()] == []
        table = {name: md5_file(fewshot_data / "mnist" / name) for name in MNIST.md5}
        prepare_mnist("mnist", url, tmp_path / "b", quiet=True, md5=table)
    split = load_idx_split("mnist", "test", tmp_path / "b")
    assert split.data.shape == (10000, 1, 28, 28) and int(split.counts.sum()) == 10000
    assert sorted(p.name
                  for p in (tmp_path / "b" / "mnist").iterdir()) == sorted(
                      [*MNIST.md5, "mnist-28.h5"])


def test_full_disk_during_a_download_says_so(tmp_path, monkeypatch):
    """Issue 14: a full disk used to say "the download was interrupted; run the command again"."""
    import errno

    import episodes.download as dl

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(b"x" * 100_000)
    real = dl.atomic_open

    class FullFile:
        def __init__(self, fh):
            self.fh, self.written = fh, 0

        def write(self, chunk):
            self.written += len(chunk)
            if self.written > 70_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(chunk)

    @contextlib.contextmanager
    def full_disk(*args, **kwargs):
        with real(*args, **kwargs) as fh:
            yield FullFile(fh)

    monkeypatch.setattr(dl, "atomic_open", full_disk)
    url = (tmp_path / "src" / "big.bin").as_uri()
    dest = tmp_path / "data" / "big.bin"
    with pytest.raises(DataError) as info:
        download(url, dest, md5=None, quiet=True)
    assert str(info.value) == (
        f"no space left on the disk to download {url} into {dest.parent} (No space left on "
        "device): free disk space or pass a --root on a disk with room "
        "(nothing was kept)")
    assert list(dest.parent.iterdir()) == []

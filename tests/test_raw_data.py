"""The real-data fixtures' own logic (tests/raw_data.py, tests/conftest.py): FEWSHOT_RAW_DATA, else
download into a cache, else one clear skip reason, or a failure under FEWSHOT_REQUIRE_DATA=1; the
learn2learn oracle likewise."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from episodes.errors import DataError
from tests.raw_data import RAW_FILES, RawDataMissing, find_raw_data

ROOT = Path(__file__).resolve().parents[1]


def test_complete_fewshot_data_is_used_as_is(fewshot_data, tmp_path):
    def no_fetch(*args, **kwargs):
        raise AssertionError("nothing may be downloaded when FEWSHOT_RAW_DATA is complete")

    env = {"FEWSHOT_RAW_DATA": str(fewshot_data), "FEWSHOT_TEST_CACHE": str(tmp_path / "cache")}
    assert find_raw_data(env, fetch=no_fetch) == fewshot_data
    assert not (tmp_path / "cache").exists()


def test_incomplete_fewshot_data_downloads_every_file_into_the_cache_once(fewshot_data, tmp_path):
    calls = []

    def fetch(url, dest, md5, *, quiet, timeout):  # serves the real files, as the network would
        calls.append((url, Path(dest), md5, timeout))
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fewshot_data / Path(dest).relative_to(tmp_path / "cache"), dest)
        return Path(dest)

    (tmp_path / "data").mkdir()
    env = {"FEWSHOT_RAW_DATA": str(tmp_path / "data"),
           "FEWSHOT_TEST_CACHE": str(tmp_path / "cache")}
    assert find_raw_data(env, fetch=fetch) == tmp_path / "cache"
    assert sorted(dest.relative_to(tmp_path / "cache").as_posix()
                  for _, dest, _, _ in calls) == sorted(RAW_FILES)
    assert all(md5 == RAW_FILES[d.relative_to(tmp_path / "cache").as_posix()][1]
               for _, d, md5, _ in calls)
    assert all(url.startswith("https://") or url.startswith("http://") for url, *_ in calls)
    assert max(t for *_, t in calls) <= 30  # fails fast without network
    assert not any((tmp_path / "data").iterdir())  # FEWSHOT_RAW_DATA itself is never written
    # cached
    assert find_raw_data(env, fetch=fetch) == tmp_path / "cache" and len(calls) == len(RAW_FILES)


def test_failed_download_and_disabled_download_give_one_line_reasons(tmp_path):
    def offline(url, dest, md5, *, quiet, timeout):
        raise DataError(
            f"download of {url} failed: [Errno -3] Temporary failure in name resolution; check "
            "your "
            "connection or use --source DIR")

    env = {"FEWSHOT_RAW_DATA": str(tmp_path), "FEWSHOT_TEST_CACHE": str(tmp_path / "cache")}
    with pytest.raises(RawDataMissing) as info:
        find_raw_data(env, fetch=offline)
    text = str(info.value)
    assert ("\n" not in text
            and f"FEWSHOT_RAW_DATA={tmp_path} (lacks omniglot/images_background.zip and" in text)
    assert ("download into" in text and "name resolution" in text
            and "set FEWSHOT_RAW_DATA to a folder" in text)
    with pytest.raises(RawDataMissing,
                       match=r"not found in FEWSHOT_RAW_DATA \(not set\) and downloads are off"):
        find_raw_data({"FEWSHOT_TEST_CACHE": str(tmp_path / "cache"), "FEWSHOT_NO_DOWNLOAD": "1"},
                      fetch=offline)


def _pytest_on(tmp_path: Path, test_source: str, plugin: str,
               **env: str) -> subprocess.CompletedProcess:
    """Run one tiny test file in a fresh pytest with one of our conftests loaded as a plugin."""
    (tmp_path / "test_tiny.py").write_text(test_source)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FEWSHOT_")}
    full_env.update(
        PYTHONPATH=os.pathsep.join([env.pop("PREPEND", ""), str(ROOT)]).lstrip(os.pathsep),
                    OMP_NUM_THREADS="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", plugin, "-p", "no:cacheprovider", "-rs", "-q",
                           str(tmp_path / "test_tiny.py")], cwd=tmp_path, env=full_env,
                          capture_output=True,
                          text=True, timeout=300)


TINY_DATA_TEST = "def test_needs_data(fewshot_data):\n    assert fewshot_data.is_dir()\n"


@pytest.mark.slow  # two fresh pytest processes
def test_fixture_skips_without_data_and_fails_under_require_data(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"FEWSHOT_RAW_DATA": str(empty), "FEWSHOT_TEST_CACHE": str(tmp_path / "cache"),
           "FEWSHOT_NO_DOWNLOAD": "1"}
    done = _pytest_on(tmp_path, TINY_DATA_TEST, "tests.conftest", **env)
    assert "1 skipped" in done.stdout, done.stdout + done.stderr
    assert f"raw data sets not found in FEWSHOT_RAW_DATA={empty}" in done.stdout
    assert "FEWSHOT_NO_DOWNLOAD=1" in done.stdout
    done = _pytest_on(tmp_path, TINY_DATA_TEST, "tests.conftest", FEWSHOT_REQUIRE_DATA="1", **env)
    assert done.returncode != 0 and "1 error" in done.stdout, done.stdout + done.stderr
    assert "(FEWSHOT_REQUIRE_DATA=1: required)" in done.stdout


@pytest.mark.slow  # two fresh pytest processes
def test_learn2learn_fixture_skips_when_missing_and_fails_under_require_data(tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "learn2learn.py").write_text("raise ImportError('learn2learn hidden by the test')\n")
    test = "def test_oracle(learn2learn):\n    pass\n"
    done = _pytest_on(tmp_path, test, "tests.fewshot.learners.conftest", PREPEND=str(hide))
    assert ("1 skipped" in done.stdout
            and "learn2learn (test oracle) is not installed" in done.stdout), done.stdout
    done = _pytest_on(tmp_path, test, "tests.fewshot.learners.conftest", PREPEND=str(hide),
                      FEWSHOT_REQUIRE_DATA="1")
    assert (done.returncode != 0 and "1 error" in done.stdout
            and "bench/install_learn2learn.sh" in done.stdout)

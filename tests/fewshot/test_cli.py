"""The console script's own behaviour: our warnings print as one ``warning: ...`` line, ``python -m
fewshot`` and ``--version`` work, and a closed output pipe ends the command quietly."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import fewshot.pretrained as pt
from fewshot.cli import BROKEN_PIPE_STATUS, main

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_warning_is_one_line(tmp_path, capsys, monkeypatch):
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_bytes(b"\xff\xfe")  # not UTF-8
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    monkeypatch.setattr(pt.registry, "_WARNED", set())
    pt.register_dir(tmp_path / "models")
    show = warnings.showwarning
    assert main(["pretrained", "list"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"warning: skipping the pretrained model in {broken}: ") and err.count(
        "\n") == 1, err
    assert warnings.showwarning is show  # restored: main is also called in-process


def _run_fewshot(*args: str, **kw) -> subprocess.CompletedProcess:
    """``python -m fewshot ARGS`` in a fresh interpreter, from the checkout under test (output
    captured unless ``stdout=``/``stderr=`` say otherwise)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kw}
    return subprocess.run([sys.executable, "-m", "fewshot", *args], env=env, cwd=ROOT, text=True,
                          timeout=300,
                          **streams)


def test_python_m_fewshot_version_is_the_package_version_and_setup_py_reads_the_same():
    import fewshot

    done = _run_fewshot("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"fewshot {fewshot.__version__}"
    setup_py = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert "version=VERSION" in setup_py and 'license="MIT"' in setup_py
    namespace: dict = {"__file__": str(ROOT / "setup.py")}
    exec(setup_py.split("setup(\n")[0],
         namespace)  # noqa: S102 - setup.py's own version lookup, without setup()
    assert namespace["VERSION"] == fewshot.__version__
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_output_into_a_closed_pipe_ends_quietly_with_status_141():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte, like `| head -0`
    try:
        done = _run_fewshot("train", "--list-presets", stdout=write_end)
    finally:
        os.close(write_end)
    assert done.stderr == "", done.stderr  # no traceback, no "Exception ignored" message
    assert done.returncode == BROKEN_PIPE_STATUS == 141


def test_output_into_an_open_pipe_is_complete_and_status_0():
    from fewshot.config import list_presets

    done = _run_fewshot("train", "--list-presets")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == list(list_presets())

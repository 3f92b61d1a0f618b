"""The repository names no folder of the machine it was developed on: messages, docstrings, comments
and docs must make sense on a user's machine (``--source DIR``, not a path that exists only
here)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Written in pieces so that this file does not match itself.
FORBIDDEN = ("/wo" + "rk/", "shared" + "/data", "REFERENCES" + ".md")
SHIPPED = ("fewshot", "episodes", "tests", "bench", "scripts", "docs", "examples", "pretrained",
           "README.md",
           "CONTRIBUTING.md", "setup.py", "setup.cfg", "ruff.toml", "LICENSE")
# .ci/run is this project's CI on its development machines: the one file allowed to know where their
# data is.
ALLOWED = {".ci/run"}


def _text_files():
    for top in SHIPPED:
        path = ROOT / top
        for f in [path] if path.is_file() else sorted(path.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and f.relative_to(ROOT).as_posix(
                ) not in ALLOWED:
                try:
                    yield f, f.read_text(encoding="utf-8")
                except UnicodeDecodeError:  # binary (PNG, safetensors, HDF5)
                    continue


def test_no_file_names_the_development_machines_folders():
    hits = [f"{f.relative_to(ROOT)}:{n}: {line.strip()[:100]}" for f, text in _text_files()
            for n, line in enumerate(text.splitlines(), 1)
            if any(word in line for word in FORBIDDEN)]
    assert hits == [], ("rewrite these generically (e.g. --source DIR_WITH_THE_ARCHIVES, "
                        "'the MAML paper'):\n" + "\n".join(hits))


def test_the_check_reads_the_packages_and_the_docs():
    names = {f.relative_to(ROOT).as_posix() for f, _ in _text_files()}
    assert {"README.md", "CONTRIBUTING.md", "docs/results.md", "fewshot/cli.py",
            "episodes/registry.py",
            "docs/architecture.md", "tests/conftest.py"} <= names


def test_a_venv_link_is_ignored(tmp_path):
    """A ``.venv`` symbolic link (what ``ln -s ../env .venv`` makes) must be ignored too: ``.venv/``
    matches folders only, which is how a dangling link to a development machine's venv got committed
    (issue 23)."""
    import shutil
    import subprocess

    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")
    (tmp_path / ".venv").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "venv-dir").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            check=True,
                            capture_output=True, text=True).stdout
    assert status.splitlines() == ["?? .gitignore"]

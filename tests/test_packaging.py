"""An editable install puts the clone on sys.path (a static .pth), never an import hook: with the hook, a
script run from the folder that holds a clone named ``fewshot`` imported the clone folder itself as an empty
namespace package (``module 'fewshot' has no attribute 'pretrained'``, issue 23), because a namespace portion
found on sys.path wins over any finder that comes after the path finder."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_editable_wheel_is_a_static_path_entry(tmp_path):
    project = tmp_path / "fewshot"  # a skeleton of the clone: setup.py reads the version and the README
    for rel in ("setup.py", "README.md", "fewshot/__init__.py"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, project / rel)
    for pkg in ("episodes", "pretrained"):
        (project / pkg).mkdir()
        (project / pkg / "__init__.py").write_text("")
    subprocess.run([sys.executable, "setup.py", "-q", "editable_wheel", "--dist-dir", str(tmp_path / "dist")],
                   cwd=project, check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith("_finder.py")], names
    (pth,) = [n for n in names if n.endswith(".pth")]
    assert zipfile.ZipFile(wheel).read(pth).decode().strip() == str(project)

"""An editable install puts the clone on sys.path (a static .pth), never an import hook: with the
hook, a script run from the folder that holds a clone named ``fewshot`` imported the clone folder
itself as an empty namespace package (``module 'fewshot' has no attribute 'pretrained'``, issue 23),
because a namespace portion found on sys.path wins over any finder that comes after the path
finder."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_editable_wheel_is_a_static_path_entry(tmp_path):
    # a skeleton of the clone: setup.py reads the version and the README
    project = tmp_path / "fewshot"
    for rel in ("setup.py", "README.md", "fewshot/__init__.py"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, project / rel)
    for pkg in ("episodes", "pretrained"):
        (project / pkg).mkdir()
        (project / pkg / "__init__.py").write_text("")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "editable_wheel", "--dist-dir", str(tmp_path / "dist")],
                   cwd=project, check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith("_finder.py")], names
    (pth,) = [n for n in names if n.endswith(".pth")]
    assert zipfile.ZipFile(wheel).read(pth).decode().strip() == str(project)


def _setup_kwargs() -> dict:
    """setup()'s keyword arguments, read by running setup.py with setuptools.setup replaced."""
    import runpy
    from unittest import mock

    seen: dict = {}
    with mock.patch("setuptools.setup", lambda **kw: seen.update(kw)):
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return seen


def test_no_requirement_pins_torch_so_a_cpu_wheel_installed_first_stays():
    """The README's CPU path installs torch's CPU wheel, then ``pip install -e ".[dev]"``; a
    requirement that pins an exact torch (torchvision, torchaudio) would make pip swap in the
    default CUDA build."""
    kw = _setup_kwargs()
    requirements = [*kw["install_requires"],
                    *[r for extra in kw["extras_require"].values() for r in extra]]
    names = {r.split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in requirements}
    assert not names & {"torchvision", "torchaudio", "torchtext", "torchdata"}, names
    (torch_req,) = [r for r in kw["install_requires"] if r.startswith("torch")]
    assert torch_req.startswith("torch>=") and "<" not in torch_req and "==" not in torch_req
    # the MAML split lists ship with the package
    assert "splits/*/*.txt" in kw["package_data"]["episodes"]


def test_a_cpu_torch_came_without_cuda_libraries():
    """Where torch is a CPU build (the README's CPU path), nothing in the environment pulled
    NVIDIA's."""
    from importlib import metadata

    import torch

    if torch.version.cuda is not None:
        return  # the default (CUDA) wheel: its nvidia libraries are the point
    nvidia = sorted(d.metadata["Name"] for d in metadata.distributions()
                    if (d.metadata["Name"] or "").lower().startswith("nvidia"))
    assert not nvidia, f"a CPU torch ({torch.__version__}) beside CUDA libraries: {nvidia}"

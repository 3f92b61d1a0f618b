"""Packaging for fewshot: episodic few-shot meta-learning on torch.func (pure Python)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

# One version, written in fewshot/__init__.py (read as text: importing the package needs torch).
HERE = Path(__file__).resolve().parent
VERSION = re.search(r'^__version__ = "([^"]+)"$',
                    (HERE / "fewshot" / "__init__.py").read_text(encoding="utf-8"),
                    re.M).group(1)

setup(
    name="fewshot",
    version=VERSION,
    license="MIT",
    description="Few-shot episodic meta-learning (MAML family) on torch.func, with episode "
                "samplers.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # package_dir {"": "."}: `pip install -e .` then puts the clone on sys.path (a static .pth)
    # instead of an
    # import hook, so a script run from the folder holding a clone named `fewshot` imports the
    # package, not
    # the clone folder as an empty namespace package (issue 23)
    package_dir={"": "."},
    packages=find_packages(
        include=["fewshot", "fewshot.*", "episodes", "episodes.*", "pretrained"]),
    package_data={
        "pretrained": ["*.json", "*.safetensors", "*/*.json", "*/*.safetensors", "*/*.pt",
                       "*/*.jsonl"],
        "episodes": ["splits/*/*.txt"]},
    include_package_data=True,
    classifiers=["License :: OSI Approved :: MIT License", "Programming Language :: Python :: 3"],
    install_requires=[
        "torch>=2.3",
        "numpy>=1.23",
        "h5py>=3.8",
        "tqdm>=4.60",
        "Pillow>=9.1",
        "safetensors>=0.4",
        "PyYAML>=6.0",
        "matplotlib>=3.6",
    ],
    extras_require={
        # higher is a test oracle only: never imported by the library. ruff and mypy: `ruff check
        # .`, `mypy`.
        # Nothing here may depend on an exact torch (torchvision does): pip would replace the CPU
        # wheel the
        # README installs first with the default CUDA one (tests/test_packaging.py checks it).
        "dev": ["pytest>=7.4", "higher==0.2.1", "ruff==0.17.6", "mypy==2.4.1"],
    },
    entry_points={"console_scripts": ["fewshot=fewshot.cli:entry"]},
)

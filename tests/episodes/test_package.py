"""Package boundaries: the data side stands alone."""
import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
import episodes
for m in pkgutil.iter_modules(episodes.__path__):
    importlib.import_module(f"episodes.{m.name}")
leaked = sorted(name for name in sys.modules if name == "fewshot" or name.startswith("fewshot."))
print(",".join(leaked))
"""


def test_episodes_never_imports_fewshot():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"episodes imported {out.stdout.strip()}"

"""glibc's thresholds as ``tune_allocator`` leaves them, seen through glibc's own accounting
(``mallinfo2``) in a fresh process each: blocks under the fixed mmap threshold come from the heap,
freed heap memory stays with the process, and the user's own settings (or ``FEWSHOT_MALLOC=system``)
win."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from fewshot.cli import main
from fewshot.runtime import allocator

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's allocator only (tune_allocator does nothing "
                                       "elsewhere)")

# mallinfo2 (glibc >= 2.33): hblks = blocks served by mmap now, arena = bytes of heap the process
# holds
PROBE = '''
import ctypes, ctypes.util, json
from fewshot.runtime.allocator import tune_allocator
libc = ctypes.CDLL(ctypes.util.find_library("c"))
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
MB = 1 << 20
tuned = tune_allocator()
def mmapped(size):
    before = libc.mallinfo2().hblks
    p = libc.malloc(size)
    served = libc.mallinfo2().hblks - before
    libc.free(p)
    return served == 1
big = libc.malloc(20 * MB)  # heap-served once the threshold is 32 MB; freed at the heap's top
held = libc.mallinfo2().arena
libc.free(big)
print(json.dumps({"tuned": tuned, "4MB mmapped": mmapped(4 * MB), "48MB mmapped": mmapped(48 * MB),
                  "kept after free": libc.mallinfo2().arena >= held - MB}))
'''


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in (*allocator.USER_SETTINGS, allocator.ENV_SWITCH)}
    proc = subprocess.run([sys.executable, "-c", PROBE],
                          env={**clean, "PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_tuned_blocks_under_32mb_come_from_the_heap_and_stay_after_free():
    assert _probe() == {"tuned": True, "4MB mmapped": False, "48MB mmapped": True,
                        "kept after free": True}


@pytest.mark.parametrize("env, field, want", [
    # their 1 MB threshold, not our 32 MB
    ({"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}, "4MB mmapped", True),
    ({"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 20)},
     "kept after free", False),
])
def test_the_users_own_settings_win(env, field, want):
    got = _probe(**env)
    assert got["tuned"] is False and got[field] is want


def test_fewshot_malloc_system_leaves_glibc_as_it_is():
    assert _probe(FEWSHOT_MALLOC="system")["tuned"] is False


@pytest.mark.parametrize("argv", [["train"], ["eval", "no-such-model-or-run"]])
def test_train_and_eval_tune_first(argv, monkeypatch, capsys):
    calls = []
    for module in ("fewshot.commands.train", "fewshot.commands.eval"):
        monkeypatch.setattr(f"{module}.tune_allocator", lambda: calls.append(True) or True)
    assert main(argv) == 2  # the command's own error comes after the tuning
    assert calls == [True]
    assert capsys.readouterr().err.startswith("error: ")

"""glibc malloc's thresholds for a meta-training process: freed activations stay in the heap for the
next step.

Why: a meta-training step allocates and frees the same activations of a few MB every iteration.
glibc serves blocks above its mmap threshold (128 KiB at start, raised only when such a block is
freed, up to 32 MiB) with a fresh ``mmap`` and gives them back on ``free``, and it returns the
heap's free top to the kernel once it exceeds the trim threshold; either way the next iteration
page-faults the same memory in again.  On the CPU that is a measurable share of a meta-learner's
step time, and how large a share depends on what the process happened to allocate first
(bench/NOTES.md, "glibc's allocator").  ``fewshot train`` and ``fewshot eval`` therefore fix both
thresholds at start, as ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` would; the cost is
that up to :data:`TRIM_THRESHOLD` bytes of freed memory stay with the process.  A user's own
``MALLOC_*`` settings (or ``FEWSHOT_MALLOC=system``) are left alone, and so is any other C library,
or a preloaded allocator such as jemalloc or tcmalloc (which ignore ``mallopt``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's own ceiling for the dynamic threshold (64-bit)
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc's dynamic rule sets beside that mmap threshold

ENV_SWITCH = "FEWSHOT_MALLOC"  # "system": leave glibc's allocator as it is
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                 "MALLOC_MMAP_MAX_")


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; returns whether it did.

    Nothing happens when the C library is not glibc, when ``FEWSHOT_MALLOC=system``, or when the
    user set any of glibc's ``MALLOC_*`` tunables in the environment (theirs win).
    """
    if os.environ.get(ENV_SWITCH, "").strip().lower() == "system":
        return False
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    libc = ctypes.CDLL(path)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success, 0 on a refused value
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

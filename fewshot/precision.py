"""Mixed precision: bf16 autocast of the forward passes, on CPU and CUDA, with everything that
accumulates kept in float32.

Why bf16 and not fp16: bf16 has float32's exponent range, so second-order MAML's gradients of
gradients neither overflow nor need loss scaling; CPUs with AVX-512 BF16 or AMX (and every recent
GPU) run its matrix products natively.

What runs in bf16 (``torch.autocast``'s lower-precision list): convolutions and linear layers,
forward and their backward (double backward included).  What stays float32, and why:

- the meta-parameters, their gradients and the meta-optimizer (Adam's moments): autocast casts a
  copy of each weight per op, the weights themselves never change dtype;
- the inner loop's update arithmetic ``theta - lr * g`` and the rules' state: elementwise ops on
  float32 parameters and float32 gradients (the gradient of a cast is cast back);
- the losses: logits are cast to float32 before cross-entropy / MSE (``float32_outputs``), since a
  softmax over bf16 logits loses the small differences the inner step follows;
- batch norm (``StepBatchNorm``): statistics, normalisation and running buffers in float32, since a
  bf16 variance of near-constant activations rounds to zero or negative.  Outside vmap the native
  kernel does this itself on bf16 input (float32 accumulation, output rounded to bf16); the
  elementary path under vmap casts its input to float32 and rounds its output back to bf16.

Usage: ``with autocast(device, resolve_precision("bf16", device)): out = learner.meta_loss(batch)``
"""
from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Iterator, Literal

import torch

from .errors import FewshotWarning

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
LOW_PRECISION = (torch.bfloat16, torch.float16)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 products natively (AVX-512 BF16 or AMX); elsewhere bf16 is
    emulated and slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
        if flags:
            return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check()) if callable(check) else False


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain float32).  bf16 on a CPU
    without native bf16 warns once and gives float32."""
    if precision == "fp32":
        return None
    if precision != "bf16":
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if torch.device(device).type == "cpu" and not cpu_has_native_bf16():
        warnings.warn(
            "precision bf16: this CPU has no native bf16 (AVX-512 BF16 or AMX), where bf16 is "
            "slower "
            "than float32; training in float32", FewshotWarning, stacklevel=2)
        return None
    return torch.bfloat16


@contextlib.contextmanager
def autocast(device: torch.device | str, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` over the block for ``dtype`` (a no-op for None)."""
    if dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


def float32_outputs(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if autocast made it bf16/fp16 (losses and batch norm run in float32), else
    ``x``."""
    return x.float() if x.dtype in LOW_PRECISION else x

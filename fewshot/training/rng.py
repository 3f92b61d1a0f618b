"""Capture and restore every random-number state a training run touches.

The library draws through explicit generators (the task sources'); the global states (Python
``random``, NumPy legacy, torch CPU/CUDA) are saved too, so user code that does use them (e.g. a
model's dropout) also resumes bit-identically.

Usage::

    state = capture_rng()        # plain types + tensors: safe for torch.load(weights_only=True)
    restore_rng(state)
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_global_rng(seed: int) -> None:
    """Seed Python ``random``, NumPy's legacy global RNG and torch (CPU + CUDA) from ``seed``.

    The library itself never draws from these; a fresh training run seeds them so that user code
    that does (dropout in a custom model, say) is reproducible too, and resumed runs match exactly.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """Global RNG states as plain Python types and CPU tensors."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
                  "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states are restored when the devices exist)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def to_plain(obj: Any) -> Any:
    """Make a task source's ``state_dict()`` loadable with ``weights_only=True`` (NumPy arrays ->
    tagged tensors)."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    return obj


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain`."""
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__", "dtype", "shape"}:
            return np.asarray(obj["__ndarray__"], dtype=obj["dtype"]).reshape(obj["shape"])
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_plain(v) for v in obj)
    return obj

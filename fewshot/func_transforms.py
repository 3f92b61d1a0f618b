"""Where the code runs with respect to ``torch.func`` transforms: the one place that asks.

Several pieces behave differently inside a transform: the inner loop takes its gradients from
``grad_and_value`` there (``torch.autograd.grad`` elsewhere), the SGD rule avoids ops without batch
rules, checkpointed steps are refused, and batch norm swaps PyTorch's native kernel for elementary
ops under ``vmap``.  PyTorch has no public "am I inside a transform?" call, so the answer comes from
functorch's interpreter stack, a private API: it is imported here once, with a fallback to the older
Python wrapper, so a PyTorch release that moves it breaks this module alone, with a clear message.

Usage: ``if under_transform(): ...`` / ``if under_vmap(): ...``
"""
from __future__ import annotations

from typing import Any, Callable

# the C interpreter stack (what torch._functorch.pyfunctorch wraps; no Python objects per call)
try:
    from torch._C._functorch import TransformType, get_interpreter_stack

    def _interpreters() -> list[Any]:
        return get_interpreter_stack() or []
except ImportError:  # pragma: no cover - a PyTorch that moved the C binding
    try:
        from torch._functorch.pyfunctorch import TransformType
        from torch._functorch.pyfunctorch import (
            retrieve_all_functorch_interpreters as _interpreters,
        )
    except ImportError as exc:
        raise ImportError(
            "fewshot needs torch.func's interpreter stack "
            "(torch._C._functorch.get_interpreter_stack "
            "or torch._functorch.pyfunctorch), which this PyTorch does not have: "
            "install the "
            "PyTorch version setup.py names") from exc

_stack: Callable[[], list[Any]] = _interpreters


def under_transform() -> bool:
    """True inside any ``torch.func`` transform (``vmap``, ``grad``, ``jvp``, ...), at any level."""
    return bool(_stack())


def under_vmap() -> bool:
    """True inside a ``torch.func.vmap`` transform (at any level)."""
    return any(i.key() == TransformType.Vmap for i in _stack())

"""Saving and restoring a task source's seeded CPU generator (for bit-identical resume).

Usage::

    state = {"generator": self.generator.get_state(), "seed": self.seed}    # in state_dict()
    restore_generator(self.generator, state, "SinusoidTasks")               # in load_state_dict()
"""
from __future__ import annotations

from typing import Any

import torch

from .errors import DataError


def restore_generator(generator: torch.Generator, state: Any, owner: str) -> None:
    """Set ``generator`` from ``state["generator"]``, or raise a one-line ``DataError`` naming
    ``owner``.

    ``state`` must be a dict whose ``"generator"`` is a uint8 tensor from
    ``torch.Generator.get_state()``.
    """
    gen_state = state.get("generator") if isinstance(state, dict) else None
    if not isinstance(gen_state, torch.Tensor) or gen_state.dtype != torch.uint8:
        raise DataError(
            f"{owner} state needs a uint8 'generator' tensor: pass a dict from "
            f"{owner}.state_dict()")
    try:
        generator.set_state(gen_state.cpu())
    except RuntimeError as exc:
        raise DataError(
            f"{owner} state 'generator' is not a valid CPU generator state ({exc}): pass a dict "
            "from "
            f"{owner}.state_dict()") from exc

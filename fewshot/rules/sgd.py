"""Plain differentiable SGD with one learning rate per adapted tensor and per step (MAML, MAML++ LSLR)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .base import Params, State, UpdateRule


class SGD(UpdateRule):
    """``update = -lr[name, step] * grad``; steps past the last LR column reuse the last one.

    ``lrs`` is a ``[len(names), steps]`` tensor: a parameter when ``learnable`` (MAML++ LSLR, each
    entry initialised to ``lr``), otherwise a buffer (plain MAML: every entry equals ``lr``).  Keeping
    one explicit layout, rather than "a float or a tensor indexed by step", means a per-step LR can
    never be confused with a per-element one.
    """

    def __init__(self, names: Sequence[str], lr: float, *, steps: int = 1, learnable: bool = False,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> None:
        super().__init__()
        if not names:
            raise ConfigError("SGD needs at least one parameter name to update")
        if steps <= 0:
            raise ConfigError(f"SGD steps must be a positive integer, got {steps}")
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        lrs = torch.full((len(self.names), steps), float(lr), dtype=dtype, device=device)
        if learnable:
            self.lrs = nn.Parameter(lrs)
        else:
            self.register_buffer("lrs", lrs)

    def lr(self, name: str, step: int) -> torch.Tensor:
        """The (0-d) learning rate of tensor ``name`` at inner step ``step``."""
        return self.lrs[self.index[name], min(step, self.lrs.shape[1] - 1)]

    def forward(self, grads: Mapping[str, torch.Tensor], state: State, params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        return {n: -(self.lr(n, step) * g) for n, g in grads.items()}, state

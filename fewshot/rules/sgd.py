"""Plain differentiable SGD with one learning rate per adapted tensor and per step (MAML, MAML++ LSLR)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..checks import check_count
from ..errors import ConfigError
from ..func_transforms import under_transform
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
        check_count(steps, "SGD steps")
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

    def step(self, grads: Mapping[str, torch.Tensor], state: State, params: Mapping[str, torch.Tensor], *,
             step: int, loss: torch.Tensor) -> tuple[Params, State]:
        """``params - lr * grad`` in one fused op per tensor instead of three (multiply, negate, add): fewer
        passes over memory and fewer autograd nodes to build and to differentiate twice (bench/NOTES.md).
        Fixed learning rates on the CPU become Python scalars (``add`` with ``alpha``; one ``_foreach_add``
        over all tensors when they share one rate, outside ``torch.func`` transforms, which have no batch
        rule for it); learnable ones (or on an accelerator, where reading them would synchronise) stay
        tensors (``addcmul``)."""
        new = dict(params)
        names = list(grads)
        col = min(step, self.lrs.shape[1] - 1)
        if self.lrs.requires_grad or self.lrs.device.type != "cpu":
            for n in names:
                new[n] = torch.addcmul(params[n], self.lrs[self.index[n], col], grads[n], value=-1)
            return new, state
        lrs = self.lrs[[self.index[n] for n in names], col].tolist()
        if len(set(lrs)) == 1 and not under_transform():
            new.update(zip(names, torch._foreach_add([params[n] for n in names], [grads[n] for n in names],
                                                     alpha=-lrs[0])))
        else:
            for n, lr in zip(names, lrs):
                new[n] = torch.add(params[n], grads[n], alpha=-lr)
        return new, state

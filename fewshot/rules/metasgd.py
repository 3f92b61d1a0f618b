"""SGD with a learned learning rate per parameter *element* (Meta-SGD, Li et al. 2017)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..checks import check_count, check_interval
from ..errors import ConfigError
from .base import Params, State, UpdateRule


def check_alpha_init(value: object) -> tuple[float, float]:
    """The initial alpha range ``(low, high)`` as floats (validated here only: ``MetaSGDConfig``
    calls this)."""
    return check_interval(value, "alpha_init (the range Meta-SGD's alphas start in)",
                          hint=": e.g. alpha_init=(0.005, 0.1)")


class ElementwiseSGD(UpdateRule):
    """``update = -alpha[name][step] * grad`` elementwise, ``alpha`` a meta-parameter.

    ``alphas[i]`` (the tensor of ``names[i]``) has shape ``[steps, *shape]``: one row per inner step
    (``steps=1``: Meta-SGD's single alpha shared by every step); steps past the last row reuse it,
    as in ``SGD``.  The entries start uniform in ``[low, high]`` (Meta-SGD: ``[0.005, 0.1]``), drawn
    in float64 from a generator seeded by ``seed`` (so the draws are reproducible, independent of
    the global RNG, and the same values whatever ``dtype``) and then cast.  ``low == high`` gives a
    constant. The alphas are not constrained to be positive: Meta-SGD learns the update *direction*
    too.
    """

    def __init__(self, names: Sequence[str], shapes: Sequence[Sequence[int]],
                 init: tuple[float, float], *,
                 steps: int = 1, seed: int = 0, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if not names:
            raise ConfigError("ElementwiseSGD needs at least one parameter name to update")
        if len(shapes) != len(names):
            raise ConfigError(f"ElementwiseSGD got {len(names)} names but {len(shapes)} shapes: "
                              "give one shape per name")
        check_count(steps, "ElementwiseSGD steps")
        low, high = check_alpha_init(init)
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        gen = torch.Generator().manual_seed(seed)
        self.alphas = nn.ParameterList()
        for shape in shapes:
            draws = torch.rand((steps, *shape), generator=gen, dtype=torch.float64)
            self.alphas.append(
                nn.Parameter((low + (high - low) * draws).to(dtype=dtype, device=device)))

    def alpha(self, name: str, step: int) -> torch.Tensor:
        """The learning-rate tensor (the shape of parameter ``name``) used at inner step
        ``step``."""
        a = self.alphas[self.index[name]]
        return a[min(step, a.shape[0] - 1)]

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        return {n: -(self.alpha(n, step) * g) for n, g in grads.items()}, state

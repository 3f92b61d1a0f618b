"""Masking gradients per output unit with a learned, per-task sampled binary mask (MT-net's M)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..checks import check_number
from ..errors import ConfigError
from .base import Params, State, UpdateRule


def check_temperature(value: object) -> float:
    """The Gumbel-softmax temperature (a finite number > 0; the paper uses 1), validated here only
    (``MTNetConfig`` calls this)."""
    return check_number(value, "temperature", above=0,
                        note=" (the mask's Gumbel-softmax temperature; e.g. 1)")


class RowMask(UpdateRule):
    """``M ⊙ grad`` where ``M`` holds one binary value per output unit (row) of each layer.

    ``groups`` lists each masked layer as ``(parameter names, units)``: every named tensor has
    ``units`` rows (dim 0: a Linear/Conv2d weight and its bias), and row ``r`` of all of them shares
    one mask value, as in MT-net (Lee & Choi 2018, the reference code's ``share_M``).  Gradients of
    names in no group pass through unchanged; chain with a step rule: ``Chain(RowMask(...),
    SGD(...))``.

    The mask is drawn once per task in ``init`` from the learned ``logits`` (one per unit, in group
    order) with the straight-through Gumbel-softmax estimator: forward the hard sample, backward the
    gradient of the relaxed one.  MT-net's two-class Gumbel-softmax over ``[logit, 0]`` equals
    ``sigmoid((logit + g1 - g0) / T)``, and the difference of two Gumbel(0, 1) draws is a standard
    logistic ``log(u) - log(1 - u)``, so one U(0, 1) draw per unit (``noise_size`` = total units)
    gives exactly the reference's distribution; ties (``logit + noise == 0``) count as 1, as there.

    ``noise=None`` (evaluation) gives the most likely mask, ``logits >= 0``: deterministic and
    repeatable (the reference samples at test time too, which adds sampling noise to every reported
    accuracy), and at the initial logits (0, probability 1/2) it adapts every unit, i.e. an
    untrained MT-net evaluates like T-net.  Its value is exactly 0 or 1 (the straight-through term
    is added as ``soft - soft``, which is exactly zero), so a zero mask adapts exactly nothing.
    """

    def __init__(self, groups: Sequence[tuple[Sequence[str], int]], *, logit_init: float = 0.0,
                 temperature: float = 1.0, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if not groups:
            raise ConfigError(
                "RowMask needs at least one group of (parameter names, units) to mask")
        temperature = check_temperature(temperature)
        self.groups: list[tuple[list[str], int, int]] = []  # (names, first unit, units)
        start = 0
        for names, units in groups:
            if units <= 0:
                raise ConfigError(
                    f"RowMask group {list(names)} has {units} units: give a positive count")
            self.groups.append((list(names), start, int(units)))
            start += int(units)
        self.temperature = temperature
        self.logits = nn.Parameter(
            torch.full((start,), float(logit_init), dtype=dtype, device=device))
        self.noise_size = start

    def mask(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The ``[units]`` mask: a straight-through Gumbel sample from ``noise`` (U(0, 1) draws), or
        the most likely mask when ``noise`` is None."""
        z: torch.Tensor = self.logits
        if noise is not None:
            u = noise.to(z.dtype).clamp(min=torch.finfo(z.dtype).tiny)
            z = z + (torch.log(u) - torch.log1p(-u))
        soft = torch.sigmoid(z / self.temperature)
        hard = (z >= 0).to(soft.dtype)
        return hard + (soft - soft.detach())

    def init(self, params: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None) -> State:
        return {"mask": self.mask(noise)}

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        out = dict(grads)
        mask = state["mask"]
        for names, start, units in self.groups:
            m = mask[start:start + units]
            for name in names:
                if name in out:
                    g = out[name]
                    out[name] = g * m.reshape(units, *([1] * (g.dim() - 1)))
        return out, state

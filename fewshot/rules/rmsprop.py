"""Differentiable RMSprop (Tieleman & Hinton 2012) as an inner-loop rule, step for step
``torch.optim.RMSprop``."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .base import Params, State
from .optim import LRTableRule, check_eps, check_nonneg, check_unit, safe_sqrt


class RMSprop(LRTableRule):
    """PyTorch's RMSprop over the adapted tensors, with per-task running averages::

        g   = grad + weight_decay * p
        s   = alpha * s + (1 - alpha) * g * g
        a   = lerp(a, g, 1 - alpha)                            # centered only
        d   = sqrt(s - a * a) + eps  if centered else  sqrt(s) + eps
        buf = momentum * buf + g / d;  p -= lr * buf           # momentum > 0
        p  -= lr * g / d                                       # momentum == 0

    ``lr`` is the ``LRTableRule`` table (one per tensor and step, learnable with ``learnable``); the
    state holds ``s`` (and ``a`` when centered, ``buf`` with momentum), zeros at ``init``.  ``sqrt``
    is ``safe_sqrt`` (finite derivative at 0, and 0 instead of NaN where a centred variance rounds
    below 0).
    """

    def __init__(self, names: Sequence[str] | None = None, lr: float | None = None, *,
                 alpha: float = 0.99,
                 eps: float = 1e-8, momentum: float = 0.0, centered: bool = False,
                 weight_decay: float = 0.0,
                 steps: int = 1, learnable: bool = False, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__(names, lr, steps=steps, learnable=learnable, dtype=dtype, device=device)
        self.alpha = check_unit("RMSprop alpha", alpha)
        self.eps = check_eps("RMSprop eps", eps)
        self.momentum = check_unit("RMSprop momentum", momentum)
        self.centered = bool(centered)
        self.weight_decay = check_nonneg("RMSprop weight_decay", weight_decay)

    def _keys(self) -> list[str]:
        return ["square_avg"] + (["grad_avg"] if self.centered else []) + (["momentum"]
                                                                           if self.momentum else [])

    def init(self, params: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None) -> State:
        return {key: {n: torch.zeros_like(params[n]) for n in self.names} for key in self._keys()}

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        new: State = {key: dict(state[key]) for key in self._keys()}
        out: Params = {}
        for n, g in grads.items():
            if self.weight_decay:
                g = g + self.weight_decay * params[n]
            s = torch.addcmul(state["square_avg"][n] * self.alpha, g, g, value=1 - self.alpha)
            new["square_avg"][n] = s
            if self.centered:
                a = torch.lerp(state["grad_avg"][n], g, 1 - self.alpha)
                new["grad_avg"][n] = a
                s = torch.addcmul(s, a, a, value=-1)
            d = safe_sqrt(s) + self.eps
            if self.momentum:
                buf = torch.addcdiv(state["momentum"][n] * self.momentum, g, d)
                new["momentum"][n] = buf
                out[n] = -self.lr(n, step) * buf
            else:
                out[n] = -self.lr(n, step) * (g / d)
        return out, new

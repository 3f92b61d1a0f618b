"""Differentiable Adam (Kingma & Ba 2015) as an inner-loop rule, step for step
``torch.optim.Adam``."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .base import Params, State
from .optim import LRTableRule, check_betas, check_eps, check_nonneg, safe_sqrt


class Adam(LRTableRule):
    """PyTorch's Adam (``amsgrad=False``) over the adapted tensors, with per-task moments.

    At inner step ``t`` (0-based, the inner loop's ``step``; bias corrections use ``k = t + 1``)::

        g  = grad + weight_decay * p
        m  = lerp(m, g, 1 - beta1)                 # beta1 * m + (1 - beta1) * g
        v  = beta2 * v + (1 - beta2) * g * g
        p -= lr / (1 - beta1**k) * m / (sqrt(v) / sqrt(1 - beta2**k) + eps)

    ``lr`` is the ``LRTableRule`` table (one per tensor and step, learnable with ``learnable``).
    The state is ``{"m": {name: tensor}, "v": {name: tensor}}``, zeros at ``init``, batched by
    ``vmap`` like the parameters; the step count is the ``step`` every rule is given (the same for
    every task), so the state holds no counter.  ``sqrt`` is ``safe_sqrt``: the same values, but a
    finite (zero) derivative where ``v == 0`` (a coordinate whose gradient was exactly 0 at every
    step so far), so second-order meta-gradients stay finite there (docs/rules.md).  higher's
    ``DifferentiableAdam`` adds eps to ``sqrt(v)`` before the bias correction (the same eps weighs
    ``1 / sqrt(1 - beta2**k)`` times more there): the two agree as eps -> 0.
    """

    def __init__(self, names: Sequence[str] | None = None, lr: float | None = None, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0,
                 steps: int = 1, learnable: bool = False, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__(names, lr, steps=steps, learnable=learnable, dtype=dtype, device=device)
        self.betas = check_betas("Adam betas", betas)
        self.eps = check_eps("Adam eps", eps)
        self.weight_decay = check_nonneg("Adam weight_decay", weight_decay)

    def init(self, params: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None) -> State:
        return {"m": {n: torch.zeros_like(params[n]) for n in self.names},
                "v": {n: torch.zeros_like(params[n]) for n in self.names}}

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        beta1, beta2 = self.betas
        k = step + 1
        correction1, root2 = 1 - beta1 ** k, (1 - beta2 ** k) ** 0.5
        m_new, v_new = dict(state["m"]), dict(state["v"])
        out: Params = {}
        for n, g in grads.items():
            if self.weight_decay:
                g = g + self.weight_decay * params[n]
            m = torch.lerp(state["m"][n], g, 1 - beta1)
            v = torch.addcmul(state["v"][n] * beta2, g, g, value=1 - beta2)
            m_new[n], v_new[n] = m, v
            out[n] = -(self.lr(n, step) / correction1) * (m / (safe_sqrt(v) / root2 + self.eps))
        return out, {"m": m_new, "v": v_new}

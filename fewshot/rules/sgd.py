"""Differentiable SGD with one learning rate per adapted tensor and per step (MAML, MAML++ LSLR),
and momentum."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..errors import ConfigError
from ..func_transforms import under_transform
from .base import Params, State
from .optim import LRTableRule, check_nonneg, check_unit


class SGD(LRTableRule):
    """``update = -lr[name, step] * grad``, optionally with momentum, as ``torch.optim.SGD``.

    The learning rates are the ``LRTableRule`` table (``lrs``, ``[len(names), steps]``: learnable
    with ``learnable``, MAML++ LSLR); steps past the last LR column reuse the last one.  Keeping one
    explicit layout, rather than "a float or a tensor indexed by step", means a per-step LR can
    never be confused with a per-element one.  ``names=None`` makes an unbound rule a learner binds
    to its adapted names.

    With ``momentum`` > 0 the per-task state holds one buffer per tensor and the step is PyTorch's:
    ``g += weight_decay * p``; ``buf = g`` at the first step, else ``buf = momentum * buf + (1 -
    dampening)
    * g``; ``g = g + momentum * buf`` (``nesterov``) or ``g = buf``; ``p -= lr * g``.
    """

    def __init__(self, names: Sequence[str] | None = None, lr: float | None = None, *,
                 steps: int = 1,
                 learnable: bool = False, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False,
                 weight_decay: float = 0.0, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__(names, lr, steps=steps, learnable=learnable, dtype=dtype, device=device)
        self.momentum = check_unit("SGD momentum", momentum)
        self.dampening = check_unit("SGD dampening", dampening)
        self.weight_decay = check_nonneg("SGD weight_decay", weight_decay)
        if nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ConfigError(
                "SGD nesterov needs momentum > 0 and dampening = 0 (as torch.optim.SGD): "
                f"got momentum={momentum}, dampening={dampening}")
        self.nesterov = bool(nesterov)

    def init(self, params: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None) -> State:
        if self.momentum == 0:
            return {}
        return {"momentum": {n: torch.zeros_like(params[n]) for n in self.names}}

    def _direction(self, name: str, g: torch.Tensor, p: torch.Tensor, state: State,
                   new_state: State,
                   step: int) -> torch.Tensor:
        """The (weight-decayed, momentum) direction ``g`` that ``p -= lr * g`` takes."""
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            old = state["momentum"][name]
            buf = g if step == 0 else torch.add(old * self.momentum, g, alpha=1 - self.dampening)
            new_state["momentum"][name] = buf
            g = torch.add(g, buf, alpha=self.momentum) if self.nesterov else buf
        return g

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        if not (self.momentum or self.weight_decay):
            return {n: -(self.lr(n, step) * g) for n, g in grads.items()}, state
        new_state: State = {"momentum": dict(state["momentum"])} if self.momentum else {}
        out = {n: -(self.lr(n, step) * self._direction(n, g, params[n], state, new_state, step))
               for n, g in grads.items()}
        return out, new_state

    def step(self, grads: Mapping[str, torch.Tensor], state: State,
             params: Mapping[str, torch.Tensor], *,
             step: int, loss: torch.Tensor) -> tuple[Params, State]:
        """``params - lr * grad`` in one fused op per tensor instead of three (multiply, negate,
        add): fewer passes over memory and fewer autograd nodes to build and to differentiate twice
        (bench/NOTES.md). Fixed learning rates on the CPU become Python scalars (``add`` with
        ``alpha``; one ``_foreach_add`` over all tensors when they share one rate, outside
        ``torch.func`` transforms, which have no batch rule for it); learnable ones (or on an
        accelerator, where reading them would synchronise) stay tensors (``addcmul``).  With
        momentum or weight decay: ``forward``'s updates, added."""
        if self.momentum or self.weight_decay:
            return super().step(grads, state, params, step=step, loss=loss)
        new = dict(params)
        names = list(grads)
        col = min(step, self.lrs.shape[1] - 1)
        if self.lrs.requires_grad or self.lrs.device.type != "cpu":
            for n in names:
                new[n] = torch.addcmul(params[n], self.lrs[self.index[n], col], grads[n], value=-1)
            return new, state
        lrs = self.lrs[[self.index[n] for n in names], col].tolist()
        if len(set(lrs)) == 1 and not under_transform():
            new.update(
                zip(names, torch._foreach_add([params[n] for n in names], [grads[n] for n in names],
                                                     alpha=-lrs[0])))
        else:
            for n, lr in zip(names, lrs):
                new[n] = torch.add(params[n], grads[n], alpha=-lr)
        return new, state

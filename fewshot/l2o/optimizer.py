"""``LearnedOptimizer``: a meta-trained ``CoordinateLSTM`` used like any ``torch.optim.Optimizer``.

Each parameter keeps its own LSTM states (one row per coordinate) in ``optimizer.state``, so
``state_dict()`` / ``load_state_dict()`` resume an optimization exactly. The update is
``p <- p + lr * m(grad)``; ``lr`` (default 1, the meta-trained setting) exists so LR schedulers
work.

Usage::

    opt = LearnedOptimizer(model.parameters(), net=fewshot.pretrained.load_learned_optimizer(
        "l2o-mnist"))                                   # or net=CoordinateLSTM(...) of your own
    loss.backward(); opt.step(); opt.zero_grad()
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, overload

import torch

from ..checks import check_number
from ..errors import ConfigError
from .net import CoordinateLSTM

CHUNK = 16384  # coordinates per LSTM call in step()


def _state_keys(layers: int) -> list[str]:
    return [f"{kind}{i}" for i in range(layers) for kind in ("h", "c")]


class LearnedOptimizer(torch.optim.Optimizer):
    """Apply a learned coordinatewise LSTM optimizer to ``params``.

    ``net``: the meta-trained network, e.g. ``fewshot.pretrained.load_learned_optimizer(name)``
    (a pretrained name or a directory written by ``save_learned_optimizer``). It is used frozen
    (no gradients).
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], *,
                 net: CoordinateLSTM | None = None, lr: float = 1.0) -> None:
        if net is None:
            raise ConfigError(
                "LearnedOptimizer needs net= (a CoordinateLSTM): e.g. "
                "net=fewshot.pretrained.load_learned_optimizer('l2o-mnist')")
        if not isinstance(net, CoordinateLSTM):
            raise ConfigError(f"net must be a fewshot.l2o.CoordinateLSTM, got {type(net).__name__}")
        lr = check_number(lr, "LearnedOptimizer lr", at_least=0, note=" (1 = as meta-trained)")
        super().__init__(params, dict(lr=lr))
        self.net = net.eval().requires_grad_(False)
        self._keys = _state_keys(net.config.layers)

    def _check_state(self, p: torch.Tensor, state: dict) -> None:
        rows = state[self._keys[0]].shape[0]
        if rows != p.numel() or state[self._keys[0]].shape[1] != self.net.config.hidden:
            raise ConfigError(
                f"the learned optimizer's state for a parameter of shape {tuple(p.shape)} "
                f"({p.numel()} coordinates) "
                f"holds {rows} coordinates x {state[self._keys[0]].shape[1]} units: it was loaded "
                "from a state_dict "
                "saved for a different model or optimizer; load one saved for these parameters, or "
                "start from a "
                "fresh LearnedOptimizer")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a saved state, refusing per-parameter LSTM states whose shape does not fit the
        parameter."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state:
                    missing = [k for k in self._keys if k not in state]
                    if missing:
                        raise ConfigError(
                            f"learned optimizer state lacks {missing}: it was saved by another "
                            "optimizer "
                            f"or with a {len(self._keys) // 2 - 1}-layer net "
                            "mismatch; start fresh")
                    self._check_state(p, state)

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        ref = next(self.net.parameters())
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ConfigError("LearnedOptimizer does not support sparse gradients")
                if ref.device != p.device:
                    self.net.to(p.device)
                    ref = next(self.net.parameters())
                state = self.state[p]
                if not state:
                    zeros = self.net.initial_state(p.numel(), device=p.device)
                    state.update(zip(self._keys, zeros))
                    state["step"] = 0
                self._check_state(p, state)
                grad = p.grad.reshape(-1).to(ref.dtype)
                update = torch.empty_like(grad)
                states = [state[k] for k in self._keys]
                # Coordinates are independent: run them in cache-sized chunks (timings:
                # bench/NOTES.md).
                for start in range(0, grad.numel(), CHUNK):
                    stop = min(start + CHUNK, grad.numel())
                    update[start:stop], new = self.net(grad[start:stop],
                                                       tuple(x[start:stop] for x in states))
                    for x, y in zip(states, new):
                        x[start:stop] = y
                state["step"] += 1
                p.add_(update.view_as(p).to(p.dtype), alpha=group["lr"])
        return loss

"""What the ``torch.optim``-style rules (``SGD``, ``Adam``, ``RMSprop``) share: a table of learning
rates with one entry per adapted tensor and per step, binding to a learner's adapted names, the
checks of their hyper-parameters, and a square root whose derivative stays finite at zero.

A rule made without ``names`` (``Adam(lr=0.01)``) is *unbound*: it holds its hyper-parameters only,
and a learner given it (``MAML(model, cfg, rule=Adam(lr=0.01))``) calls ``bind(names, like)``, which
returns a bound copy whose learning-rate table covers the learner's adapted names in ``like``'s
dtype and device.  The copy (not the rule itself) is bound, so one unbound rule can be handed to
several learners.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .base import UpdateRule


def check_unit(what: str, value: Any) -> float:
    """``value`` as a float if it is a number in [0, 1) (betas, momentum, RMSprop's alpha), else
    ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{what} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_eps(what: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0 (the denominators' eps), else
    ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(f"{what} must be a finite number > 0, got {value!r}: e.g. 1e-8")
    return float(value)


def check_nonneg(what: str, value: Any) -> float:
    """``value`` as a float if it is a finite number >= 0 (learning rate, weight decay), else
    ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ConfigError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_betas(what: str, value: Any) -> tuple[float, float]:
    """``value`` as ``(beta1, beta2)`` if it is two numbers in [0, 1), else ConfigError."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(
            f"{what} must be two numbers (beta1, beta2) in [0, 1), got {value!r}: e.g. (0.9, "
            "0.999)")
    return check_unit(f"{what}[0]", value[0]), check_unit(f"{what}[1]", value[1])


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x > 0`` and exactly 0 for ``x <= 0``, with derivative 0 (not inf) where ``x
    <= 0``.

    Adam's and RMSprop's second moment is exactly 0 at a coordinate whose gradient has been exactly
    0 so far (a dead ReLU unit); there ``d sqrt(v)/dv`` is inf, and the zero gradient flowing back
    to ``v`` times inf gives NaN second-order meta-gradients (higher #125, TorchOpt #26).  The
    double ``where`` evaluates the root at 1 in the masked coordinates and discards it, so the
    forward values equal ``torch.sqrt`` bit for bit wherever ``x > 0`` and the backward is finite
    everywhere.  Taking 0 as the derivative at 0 loses nothing: there the moment's own gradient ``2
    (1 - beta2) g`` is 0 as well, so the exact derivative of the update (which runs through the
    first moment) is what autograd returns. Negative ``x`` (only a centred RMSprop's ``E[g^2] -
    E[g]^2`` can round below 0) gives 0, not NaN.
    """
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))),
                       torch.zeros_like(x))


class LRTableRule(UpdateRule):
    """Base of the rules with one learning rate per adapted tensor and per step (``lrs``).

    ``lrs`` is a ``[len(names), steps]`` tensor: a parameter when ``learnable`` (MAML++ LSLR, each
    entry initialised to ``lr``), otherwise a buffer; steps past the last column reuse the last one.
    With ``names=None`` the rule is unbound and gets its table from ``bind``.
    """

    lrs: torch.Tensor

    def __init__(self, names: Sequence[str] | None, lr: float | None, *, steps: int = 1,
                 learnable: bool = False,
                 dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        kind = type(self).__name__
        if lr is None:
            raise ConfigError(f"{kind} needs a learning rate: e.g. {kind}(lr=0.01)")
        self.lr_init = check_nonneg(f"{kind} lr", lr)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise ConfigError(f"{kind} steps must be a positive integer, got {steps}")
        self.steps, self.learnable = steps, bool(learnable)
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        if names is not None:
            if not names:
                raise ConfigError(f"{kind} needs at least one parameter name to update")
            self._make_table(list(names), dtype, device)

    @property
    def bound(self) -> bool:
        return bool(self.names)

    def _make_table(self, names: list[str], dtype: torch.dtype,
                    device: torch.device | str | None) -> None:
        self.names = names
        self.index = {n: i for i, n in enumerate(names)}
        lrs = torch.full((len(names), self.steps), self.lr_init, dtype=dtype, device=device)
        if self.learnable:
            self.lrs = nn.Parameter(lrs)
        else:
            self.register_buffer("lrs", lrs)

    def bind(self, names: Sequence[str], like: torch.Tensor) -> UpdateRule:
        """A bound copy covering ``names`` (in ``like``'s dtype and device) if unbound; else
        ``self``, once every one of its names is among ``names``."""
        if self.bound:
            unknown = [n for n in self.names if n not in set(names)]
            if unknown:
                raise ConfigError(
                    f"{type(self).__name__} updates {', '.join(unknown)}, which the learner does "
                    "not "
                    f"adapt (it adapts {', '.join(names)}): make the rule without "
                    "names to bind it")
            return self
        bound = copy.deepcopy(self)
        bound._make_table(list(names), like.dtype, like.device)
        return bound

    def lr(self, name: str, step: int) -> torch.Tensor:
        """The (0-d) learning rate of tensor ``name`` at inner step ``step``."""
        if not self.bound:
            raise ConfigError(
                f"{type(self).__name__} has no parameter names: give names=... or pass it to a "
                "learner")
        return self.lrs[self.index[name], min(step, self.lrs.shape[1] - 1)]

"""Optimization problems for learned optimizers: families of losses over a flat parameter vector.

A family samples a *batch* of independent problems; their parameters are one tensor ``theta``
``[B, P]`` and ``loss(theta, t)`` returns the ``[B]`` losses at step ``t``. Every optimizer we use
is coordinatewise (SGD, RMSprop, Adam, NAG, the LSTM), so optimizing the batch tensor is exactly
optimizing each problem on its own, and ``loss.sum()`` gives each problem its own gradient. All
randomness (W, y, initial parameters, mini-batch indices) is drawn at ``sample`` time from the
caller's generator, so every optimizer sees the same problems and the same mini-batches.

Usage::

    family = QuadraticFamily(dim=10)
    problems = family.sample(128, steps=100, generator=torch.Generator().manual_seed(0))
    theta = problems.init()                # [128, 10]
    losses = problems.loss(theta, step=0)  # [128]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F

from ..checks import check_count
from ..errors import ConfigError


class ProblemBatch(Protocol):
    """``B`` independent problems over ``P`` parameters each."""

    @property
    def num_problems(self) -> int:
        """``B``."""

    @property
    def dim(self) -> int:
        """``P``."""

    def init(self) -> torch.Tensor:
        """The initial parameters ``[B, P]`` (a fresh tensor on every call)."""

    def loss(self, theta: torch.Tensor, step: int) -> torch.Tensor:
        """The ``[B]`` losses of ``theta`` ``[B, P]`` at optimization step ``step``."""


class ProblemFamily(Protocol):
    """A distribution over problems."""

    name: str

    def sample(self, num: int, steps: int, generator: torch.Generator) -> ProblemBatch:
        """``num`` fresh problems, each usable for steps ``0..steps``."""


# --- quadratics
# ----------------------------------------------------------------------------------------


@dataclass
class QuadraticBatch:
    """``f_b(theta) = ||W_b theta - y_b||^2`` with Gaussian ``W_b`` ``[d, d]`` and ``y_b``
    ``[d]``."""

    W: torch.Tensor
    y: torch.Tensor
    theta0: torch.Tensor

    @property
    def num_problems(self) -> int:
        return self.W.shape[0]

    @property
    def dim(self) -> int:
        return self.W.shape[-1]

    def init(self) -> torch.Tensor:
        return self.theta0.clone()

    def loss(self, theta: torch.Tensor, step: int) -> torch.Tensor:
        residual = torch.bmm(self.W, theta.unsqueeze(-1)).squeeze(-1) - self.y
        return residual.pow(2).sum(-1)

    def minimum(self) -> torch.Tensor:
        """The exact minimum of each problem (``[B]``, zero when ``W`` is invertible), for tests."""
        solution = torch.linalg.lstsq(self.W, self.y.unsqueeze(-1)).solution
        return self.loss(solution.squeeze(-1), 0)


@dataclass
class QuadraticFamily:
    """10-dimensional quadratics ``||W theta - y||^2``, W and y IID N(0, 1), theta_0 ~ N(0,
    init_std^2)."""

    dim: int = 10
    init_std: float = 0.01
    name: str = "quadratic"

    def sample(self, num: int, steps: int, generator: torch.Generator) -> QuadraticBatch:
        check_count(num, "number of problems")
        d = check_count(self.dim, "quadratic dimension")
        W = torch.randn(num, d, d, generator=generator)
        y = torch.randn(num, d, generator=generator)
        theta0 = torch.randn(num, d, generator=generator) * self.init_std
        return QuadraticBatch(W, y, theta0)


# --- MLP classifiers
# ---------------------------------------------------------------------------------

_ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


@dataclass
class MLPBatch:
    """``B`` MLPs ``[in] -> hidden... -> [classes]`` whose weights live in ``theta`` ``[B, P]``.

    ``indices[b, t]`` are the mini-batch of problem ``b`` at step ``t`` (rows of ``x`` / ``y``).
    """

    x: torch.Tensor
    y: torch.Tensor
    sizes: tuple[int, ...]
    activation: str
    indices: torch.Tensor
    theta0: torch.Tensor

    @property
    def num_problems(self) -> int:
        return self.theta0.shape[0]

    @property
    def dim(self) -> int:
        return self.theta0.shape[1]

    def init(self) -> torch.Tensor:
        return self.theta0.clone()

    def logits(self, theta: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` ``[B, n, in]`` -> logits ``[B, n, classes]`` under each problem's weights."""
        act = _ACTIVATIONS[self.activation]
        h, offset = inputs, 0
        for layer, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            w = theta[:, offset:offset + fan_in * fan_out].reshape(-1, fan_in, fan_out)
            offset += fan_in * fan_out
            b = theta[:, offset:offset + fan_out].unsqueeze(1)
            offset += fan_out
            h = torch.baddbmm(b, h, w)
            if layer < len(self.sizes) - 2:
                h = act(h)
        return h

    def loss(self, theta: torch.Tensor, step: int) -> torch.Tensor:
        if not 0 <= step < self.indices.shape[1]:
            raise ConfigError(
                f"step {step} is outside the {self.indices.shape[1] - 1} steps these problems were "
                "sampled for: sample them with a larger `steps`")
        idx = self.indices[:, step]                       # [B, n]
        logits = self.logits(theta, self.x[idx])          # [B, n, classes]
        targets = self.y[idx]
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                               reduction="none").view(idx.shape).mean(-1)


def mlp_sizes(inputs: int, hidden: Sequence[int], classes: int) -> tuple[int, ...]:
    """Layer widths ``(inputs, *hidden, classes)``."""
    return (inputs, *hidden, classes)


def mlp_num_params(sizes: Sequence[int]) -> int:
    """Weights plus biases of an MLP with layer widths ``sizes``."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


@dataclass
class MLPFamily:
    """Train an MLP classifier on ``(x, y)`` with mini-batches of ``batch_size``, cross-entropy
    loss.

    Weights start IID Gaussian with std ``1/sqrt(fan_in)``, biases at zero; every problem has its
    own initialization and its own sequence of mini-batches (drawn uniformly, with replacement
    across steps). ``x`` ``[M, D]`` float, ``y`` ``[M]`` int64 class indices.
    """

    x: torch.Tensor
    y: torch.Tensor
    hidden: tuple[int, ...] = (20,)
    activation: str = "sigmoid"
    batch_size: int = 128
    name: str = "mlp"

    def __post_init__(self) -> None:
        if self.x.dim() != 2 or not self.x.is_floating_point():
            raise ConfigError(
                f"MLP problem inputs must be a float tensor [M, D], got {tuple(self.x.shape)} "
                f"{self.x.dtype}: flatten images and scale them to [0, 1]")
        if self.y.shape != self.x.shape[:1] or self.y.dtype != torch.int64:
            raise ConfigError(
                f"MLP problem labels must be int64 [M] matching the {self.x.shape[0]} inputs, "
                f"got {tuple(self.y.shape)} {self.y.dtype}")
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {self.activation!r}: use one of {', '.join(_ACTIVATIONS)}")
        self.hidden = tuple(check_count(h, "hidden layer width") for h in self.hidden)
        check_count(self.batch_size, "MLP problem batch_size")

    @property
    def sizes(self) -> tuple[int, ...]:
        return mlp_sizes(self.x.shape[1], self.hidden, int(self.y.max()) + 1)

    def sample(self, num: int, steps: int, generator: torch.Generator) -> MLPBatch:
        check_count(num, "number of problems")
        check_count(steps, "number of steps")
        sizes = self.sizes
        parts = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            parts.append(torch.randn(num, fan_in * fan_out, generator=generator) / fan_in ** 0.5)
            parts.append(torch.zeros(num, fan_out))
        theta0 = torch.cat(parts, dim=1)
        indices = torch.randint(0, self.x.shape[0], (num, steps + 1, self.batch_size),
                                generator=generator)
        return MLPBatch(self.x, self.y, sizes, self.activation, indices, theta0)

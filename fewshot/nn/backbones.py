"""Backbones of the MAML papers (the 4-block conv net, the fully connected net, the sinusoid MLP)
and dataset distillation's LeNet.

Usage::

    model = Conv4(in_channels=1, out_features=5, hidden=64, image_size=28)        # Omniglot
    model = Conv4(in_channels=3, out_features=5, hidden=32, image_size=84)        # mini-ImageNet
    model = Conv4(1, 5, bn_steps=6)  # MAML++ per-step BN
    model = FullyConnected(784, 5)                                                # 256-128-64-64
    model = MLP(1, 1)  # sinusoid, 40-40 ReLU
    model = LeNet(1, 10, generator=torch.Generator().manual_seed(0))              # distillation
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..checks import check_count
from ..errors import ConfigError
from .batchnorm import StepBatchNorm1d, StepBatchNorm2d


class Conv4(nn.Module):
    """Four blocks of 3x3 conv (padding 1), batch norm, ReLU and 2x2 max-pool, then a linear layer.

    ``pool=False`` uses the Omniglot reference's stride-2 convolutions instead of pooling, followed
    by a mean over the remaining spatial positions.  ``bn_steps`` > 1 gives per-step batch norm
    (``StepBatchNorm2d``; use ``inner_steps + 1``).  Usage: ``Conv4(1, 5, hidden=64,
    image_size=28)``.
    """

    def __init__(self, in_channels: int = 1, out_features: int = 5, *, hidden: int = 64,
                 image_size: int = 28,
                 blocks: int = 4, pool: bool = True, bn_steps: int = 1,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_features", out_features),
                            ("hidden", hidden),
                            ("image_size", image_size), ("blocks", blocks), ("bn_steps", bn_steps)):
            check_count(value, name)
        self.pool = pool
        layers: list[nn.Module] = []
        size, channels = image_size, in_channels
        for _ in range(blocks):
            layers.append(nn.Conv2d(channels, hidden, 3, stride=1 if pool else 2, padding=1))
            layers.append(StepBatchNorm2d(hidden, bn_steps, momentum=bn_momentum))
            layers.append(nn.ReLU())
            if pool:
                layers.append(nn.MaxPool2d(2))
                size = size // 2
            else:
                size = (size + 1) // 2
            channels = hidden
            if size <= 0:
                raise ConfigError(f"image_size={image_size} is too small for {blocks} blocks: "
                                  "use fewer blocks or larger images")
        self.features = nn.Sequential(*layers)
        self.feature_dim = hidden * size * size if pool else hidden
        self.classifier = nn.Linear(self.feature_dim, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        h = h.flatten(1) if self.pool else h.mean((2, 3))
        return self.classifier(h)


def dense_stack(in_features: int, out_features: int, hidden: Sequence[int],
                norm: Callable[[int], nn.Module] | None = None) -> nn.Sequential:
    """``Linear [+ norm] + ReLU`` per hidden width, then a final ``Linear``.

    Usage: ``dense_stack(1, 1, (40, 40))`` (the sinusoid MLP's layers).
    """
    check_count(in_features, "in_features")
    check_count(out_features, "out_features")
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        check_count(h, "hidden width")
        layers += [nn.Linear(width, h), *([norm(h)] if norm is not None else []), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class FullyConnected(nn.Module):
    """The MAML paper's fully connected classifier: Linear + batch norm + ReLU blocks
    (256-128-64-64).

    Inputs of any shape ``[N, ...]`` are flattened.  Usage: ``FullyConnected(784, 5)``.
    """

    def __init__(self, in_features: int = 784, out_features: int = 5, *,
                 hidden: Sequence[int] = (256, 128, 64, 64),
                 bn_steps: int = 1, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.net = dense_stack(in_features, out_features, hidden,
                               norm=lambda width: StepBatchNorm1d(width, bn_steps,
                                                                  momentum=bn_momentum))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class MLP(nn.Module):
    """A plain ReLU MLP (sinusoid regression: ``MLP(1, 1)`` = 1-40-40-1). Usage: ``MLP(1, 1,
    hidden=(40, 40))``."""

    def __init__(self, in_features: int = 1, out_features: int = 1, *,
                 hidden: Sequence[int] = (40, 40)) -> None:
        super().__init__()
        self.net = dense_stack(in_features, out_features, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LeNet(nn.Module):
    """LeNet as dataset distillation trains it (Wang et al. 2018, the authors' code): 5x5 conv (6
    channels; padding 2 for 28x28 inputs), ReLU, 2x2 max-pool, 5x5 conv (16), ReLU, 2x2 max-pool,
    then 120-84-``out_features`` fully connected with ReLU; no batch norm, no dropout.

    Weights are drawn Xavier-normal (gain 1) and biases set to zero, as that code initialises
    every network, from ``generator`` when given (so an initialisation is reproducible).
    Usage: ``LeNet(1, 10, image_size=28, generator=torch.Generator().manual_seed(0))``.
    """

    def __init__(self, in_channels: int = 1, out_features: int = 10, *, image_size: int = 28,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_count(in_channels, "in_channels")
        check_count(out_features, "out_features")
        if image_size not in (28, 32):
            raise ConfigError(f"LeNet takes 28x28 (padded to 32) or 32x32 images, got "
                              f"{image_size}x{image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2 if image_size == 28 else 0), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84),
                                        nn.ReLU(), nn.Linear(84, out_features))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """A fresh initialisation: Xavier-normal weights, zero biases (drawn from ``generator``)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight, gain=1.0, generator=generator)
                assert m.bias is not None  # every layer here has one
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


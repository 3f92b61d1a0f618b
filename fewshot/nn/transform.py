"""MT-net / T-net transformation layers: a meta-learned square ``T`` applied to a layer's output.

Usage::

    converted = add_transforms(model)          # every nn.Linear / nn.Conv2d, in place
    model.features[0].transform                # [out, out], initialised to the identity

A converted layer computes ``T (W x + b)`` (Lee & Choi 2018: the reference code applies ``T`` after
the bias and before normalisation/activation): for ``Linear`` a matrix product, for ``Conv2d`` a 1x1
convolution mixing output channels.  The layer keeps its class's behaviour and its state-dict keys
(``features.0.weight``, ``features.0.bias``) and gains one, ``features.0.transform``: conversion
swaps the instance's class to a subclass in place (as ``torch.nn.utils.parametrize`` does), so no
new weights are drawn, the global RNG is untouched, and hooks and attributes survive.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TransformedLinear(nn.Linear):
    """``nn.Linear`` followed by a learned ``[out, out]`` matrix ``transform`` (MT-net's T)."""

    transform: nn.Parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(super().forward(x), self.transform)


class TransformedConv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by a learned 1x1 convolution ``transform`` ``[out, out]`` (MT-net's
    T)."""

    transform: nn.Parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(super().forward(x), self.transform[:, :, None, None])


_CONVERT: dict[type, type] = {nn.Linear: TransformedLinear, nn.Conv2d: TransformedConv2d}
TRANSFORMED = (TransformedLinear, TransformedConv2d)


def add_transforms(model: nn.Module, *, skip_last: bool = False) -> list[str]:
    """Give every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` (exact types: a subclass may have its
    own ``forward``) with a trainable weight an identity-initialised ``transform``; in place.

    ``skip_last`` leaves the last such layer (in ``named_modules`` order: usually the classifier
    head) as it is.  Layers that already have a transform are kept (conversion is idempotent).
    Returns the module names of every transformed layer, in order.
    """
    candidates = [(name, m) for name, m in model.named_modules()
                  if (type(m) in _CONVERT and m.weight.requires_grad) or isinstance(m, TRANSFORMED)]
    if skip_last and candidates:
        candidates = candidates[:-1]
    names = []
    for name, m in candidates:
        if not isinstance(m, TRANSFORMED):
            w = m.weight
            m.__class__ = _CONVERT[type(m)]
            m.transform = nn.Parameter(torch.eye(w.shape[0], dtype=w.dtype, device=w.device))
        names.append(name)
    return names

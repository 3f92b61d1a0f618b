"""Train your own model with the shipped learned optimizer (l2o-mnist), next to Adam.

Usage: ``python examples/learned_optimizer.py``  (CPU, a few seconds)

The model and data here (a 2-hidden-layer tanh MLP on a synthetic 4-class problem) are not what the
optimizer was meta-trained on (a 784-20-10 sigmoid MLP on MNIST).
"""
from __future__ import annotations

import torch
from torch import nn

from fewshot.l2o import LearnedOptimizer
from fewshot.pretrained import load_learned_optimizer


def make_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, 16, generator=g) * 0.5
    y = torch.randint(0, 4, (512,), generator=g)
    return centers[y] + torch.randn(512, 16, generator=g), y


def train(make_optimizer, steps: int = 100, seed: int = 0) -> list[float]:
    """Loss per step of a fresh model optimized by ``make_optimizer(params)``."""
    x, y = make_data(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 4))
    opt = make_optimizer(model.parameters())
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses


def main(steps: int = 100) -> dict[str, list[float]]:
    net = load_learned_optimizer("l2o-mnist")
    curves = {
        "learned (l2o-mnist)": train(lambda ps: LearnedOptimizer(ps, net=net), steps),
        "adam (lr 0.01)": train(lambda ps: torch.optim.Adam(ps, lr=0.01), steps),
    }
    for name, losses in curves.items():
        print(f"{name:22s} loss {losses[0]:.4f} -> {losses[-1]:.4f} after {steps} steps")
    return curves


if __name__ == "__main__":
    main()

"""MAML on your own model and your own tensors (no dataset classes needed).

Run: ``python examples/custom_task_maml.py``
"""
import torch
from torch import nn

from episodes import TaskBatch
from fewshot import MAML, MAMLConfig


def my_tasks(g: torch.Generator, batch: int = 8) -> TaskBatch:
    """Linear-regression tasks y = a*x + b: 5 support and 10 query points each."""
    a, b = torch.randn(batch, 1, 1, generator=g), torch.randn(batch, 1, 1, generator=g)
    x = torch.rand(batch, 15, 1, generator=g) * 4 - 2
    y = a * x + b
    # ways=None: regression (MSE)
    return TaskBatch(x[:, :5], y[:, :5], x[:, 5:], y[:, 5:], ways=None)


def main(iterations: int = 300, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # model init
    model = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 1))  # any nn.Module
    learner = MAML(model, MAMLConfig(inner_steps=1, inner_lr=0.1))
    opt = torch.optim.Adam(learner.parameters(), 1e-2)
    for _ in range(iterations):
        out = learner.meta_loss(my_tasks(g))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    test = my_tasks(g, 100)
    mse = learner.eval().evaluate(test)["mse"].mean().item()
    print(f"query MSE after 1 adaptation step: {mse:.3f}")
    return mse


if __name__ == "__main__":
    main()

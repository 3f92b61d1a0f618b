"""Learn the hyperparameters of one training run from a validation split, by gradient.

Usage: ``python examples/hyperparameters_by_gradient.py``  (CPU, a few seconds)

The task: sparse linear regression, 200 features of which 10 matter. Two kinds of hyperparameter,
each learned the way that suits it (docs/bilevel.md):

1. a weight decay per weight (200 hyperparameters) by implicit differentiation at the trained
   weights (``implicit_hpo``), on 50 training examples (fewer than the weights): the decay should
   shrink the 190 useless weights and spare the 10 useful ones;
2. a learning rate per step of a 20-step run (a schedule) by reverse mode through the run
   (``unrolled_hpo``): a learning rate has no implicit hypergradient, since the minimum training
   reaches does not depend on it, but the weights after 20 steps do (400 training examples).

Held-out test examples, never seen by either loop, show whether what was learned generalises.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from fewshot.bilevel import InnerProblem, implicit_hpo, unroll, unrolled_hpo
from fewshot.rules import SGD

FEATURES, USEFUL = 200, 10


def make_data(train: int, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Training (``train``), validation (100) and test (1000) splits of one sparse linear
    problem."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.zeros(FEATURES)
    truth[:USEFUL] = torch.randn(USEFUL, generator=g)
    out = {}
    for split, count in (("train", train), ("val", 100), ("test", 1000)):
        x = torch.randn(count, FEATURES, generator=g)
        out[split] = x, x @ truth + 0.5 * torch.randn(count, generator=g)
    return out


def mse(w: torch.Tensor, data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = data
    return ((x @ w - y) ** 2).mean()


def per_weight_decay(data, rounds: int = 60) -> dict[str, float]:
    """Validation and test loss before and after learning a decay per weight implicitly."""
    log_decay = nn.ParameterDict({"w": nn.Parameter(torch.full((FEATURES,), math.log(1e-2)))})

    def train_loss(p, x, y, step):
        return ((x @ p["w"] - y) ** 2).mean() + (log_decay["w"].exp() * p["w"] ** 2).sum()

    problem = InnerProblem(train_loss, SGD(["w"], lr=0.05), 20, *data["train"], hyper=log_decay)
    start = {"w": torch.zeros(FEATURES)}
    before = unroll(problem, start).params["w"]
    for _ in range(9):  # as many steps as the learned run below takes before it is scored
        before = unroll(problem, {"w": before.detach()}).params["w"]
    hyper = [log_decay["w"]]
    result = implicit_hpo(problem, start, lambda p: mse(p["w"], data["val"]), hyper,
                          torch.optim.Adam(hyper, lr=0.1), hyper_steps=rounds, terms=10,
                          alpha=0.05)
    after = result.params["w"]
    decay = log_decay["w"].detach().exp()
    return {"val before": float(mse(before.detach(), data["val"])),
            "val after": float(mse(after, data["val"])),
            "test before": float(mse(before.detach(), data["test"])),
            "test after": float(mse(after, data["test"])),
            "decay on useful weights": float(decay[:USEFUL].mean()),
            "decay on useless weights": float(decay[USEFUL:].mean())}


def learning_rate_schedule(data, rounds: int = 40) -> dict[str, float]:
    """Validation and test loss of a 20-step run before and after learning its schedule."""
    rule = SGD(["w"], lr=0.01, steps=20, learnable=True)

    def train_loss(p, x, y, step):
        return ((x @ p["w"] - y) ** 2).mean()

    problem = InnerProblem(train_loss, rule, 20, *data["train"])
    start = {"w": torch.zeros(FEATURES)}
    with torch.no_grad():
        before = unroll(problem, start).params["w"]
    unrolled_hpo(problem, start, lambda p: mse(p["w"], data["val"]), [rule.lrs],
                 torch.optim.Adam([rule.lrs], lr=0.02), hyper_steps=rounds)
    with torch.no_grad():
        after = unroll(problem, start).params["w"]
    return {"val before": float(mse(before, data["val"])),
            "val after": float(mse(after, data["val"])),
            "test before": float(mse(before, data["test"])),
            "test after": float(mse(after, data["test"])),
            "mean learned rate": float(rule.lrs.detach().mean())}


def main() -> dict[str, dict[str, float]]:
    results = {"weight decay per weight (implicit)": per_weight_decay(make_data(train=50)),
               "learning-rate schedule (unrolled)": learning_rate_schedule(make_data(train=400))}
    for name, numbers in results.items():
        print(name)
        for key, value in numbers.items():
            print(f"  {key:26s} {value:.4f}")
    return results


if __name__ == "__main__":
    main()

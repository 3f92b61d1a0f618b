"""Single-task hyperparameter optimisation, compared (``fewshot hpo``): an MNIST or Fashion-MNIST
MLP trained on a small training set, its hyperparameters chosen on a validation split carved out of
the training images, four ways at the same training compute (inner steps counted):

- ``implicit-decay``: a weight decay per weight (one per parameter: over 100,000 for the 784-128-10
  MLP) learned by the implicit method (``fewshot.bilevel.implicit_hpo``);
- ``unrolled-lr``: a learning rate per tensor and step (a schedule) learned by unrolling
  (``fewshot.bilevel.unrolled_hpo``);
- ``random``: random search over the scalar learning rate and weight decay (log-uniform);
- ``grid``: grid search over the same two scalars;
- ``fixed``: no search, one training run of the whole budget at ``lr`` and the weight decay the
  implicit method starts from: the control that tells what ``implicit-decay``'s learned decays add
  beyond its longer training run (the searches spend the budget on many short runs).

Each method ends with a trained network, scored on the validation split and on the 10,000 test
images; ``compare`` repeats it over seeds (the data subset, the initialisation and the search's
draws) and reports mean ± 95% CI.  Gradient-based HPO fits the validation split: its validation
loss falls further than its test loss (Lorraine et al. show the extreme of it).

Usage: ``rows = compare(HPOConfig(dataset="mnist"), seeds=5)``
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..bilevel import InnerProblem, implicit_hpo, unroll, unrolled_hpo
from ..checks import check_count
from ..errors import AdaptationError, ConfigError
from ..functional import Params
from ..rules import SGD
from .build import image_arrays

METHODS = ("implicit-decay", "unrolled-lr", "random", "grid", "fixed")
START_DECAY = 1e-4  # the weight decay implicit-decay starts from, and fixed keeps
MAX_DECAY_STEP = 0.5  # implicit-decay's learned decays stay below MAX_DECAY_STEP / lr
LR_RANGE = (1e-3, 1.0)  # random and grid search: log-uniform learning rates
DECAY_RANGE = (1e-6, 1e-1)  # and weight decays


@dataclass(frozen=True)
class HPOConfig:
    """An HPO comparison: ``train_size`` training and ``val_size`` validation images drawn from the
    training split, a ``784-hidden-10`` ReLU MLP, ``budget`` inner (full-batch gradient) steps per
    method; training runs of ``run_steps`` steps at ``lr`` (random/grid search draw their own);
    the implicit method steps the hyperparameters every ``warm_steps`` training steps with
    ``terms`` Neumann terms; hyperparameter optimiser Adam at ``hyper_lr``."""

    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    train_size: int = 1000
    val_size: int = 1000
    hidden: int = 128
    budget: int = 2000
    run_steps: int = 100
    lr: float = 0.1
    warm_steps: int = 5
    terms: int = 5
    hyper_lr: float = 0.05
    data_root: str | None = None

    def __post_init__(self) -> None:
        for name in ("train_size", "val_size", "hidden", "budget", "run_steps", "warm_steps"):
            check_count(getattr(self, name), name)
        if self.budget < self.run_steps:
            raise ConfigError(f"budget ({self.budget}) must hold at least one training run of "
                              f"run_steps ({self.run_steps})")


@dataclass
class Task:
    """One seed's data (training, validation and test images, flattened to [0, 1]) and the MLP's
    initial parameters."""

    x: torch.Tensor
    y: torch.Tensor
    xv: torch.Tensor
    yv: torch.Tensor
    xt: torch.Tensor
    yt: torch.Tensor
    init: Params


def make_task(cfg: HPOConfig, seed: int) -> Task:
    """The data subset and initialisation of ``seed``."""
    g = torch.Generator().manual_seed(seed)
    x_all, y_all = image_arrays(cfg.dataset, "train", cfg.data_root)
    order = torch.randperm(len(x_all), generator=g)
    tr, va = order[:cfg.train_size], order[cfg.train_size:cfg.train_size + cfg.val_size]
    xt, yt = image_arrays(cfg.dataset, "test", cfg.data_root)
    shapes = {"0_weight": (cfg.hidden, 784), "0_bias": (cfg.hidden,), "2_weight": (10, cfg.hidden),
              "2_bias": (10,)}
    init = {}
    for name, shape in shapes.items():  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1 / math.sqrt(784 if name.startswith("0") else cfg.hidden)
        init[name] = (torch.rand(shape, generator=g) * 2 - 1) * bound
    return Task(x_all[tr], y_all[tr], x_all[va], y_all[va], xt, yt, init)


def forward(params: Params, x: torch.Tensor) -> torch.Tensor:
    """The MLP on ``x``."""
    return F.linear(F.relu(F.linear(x, params["0_weight"], params["0_bias"])), params["2_weight"],
                    params["2_bias"])


def _score(params: Params, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        out = forward(params, x)
        return float(F.cross_entropy(out, y)), float((out.argmax(-1) == y).float().mean())


def _train(task: Task, steps: int, lr: float, decay: float) -> Params:
    """Plain full-batch gradient descent with a scalar weight decay (values only)."""

    def loss(p: Params, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        return F.cross_entropy(forward(p, x), y) + 0.5 * decay * sum((w * w).sum()
                                                                     for w in p.values())

    problem = InnerProblem(loss, SGD(list(task.init), lr), steps, task.x, task.y)
    with torch.no_grad():
        return unroll(problem, task.init).params


def run_method(cfg: HPOConfig, method: str, seed: int) -> dict[str, Any]:
    """Validation and test loss and accuracy of the network ``method`` ends with on ``seed``'s
    task, and the inner steps it spent."""
    if method not in METHODS:
        raise ConfigError(f"unknown HPO method {method!r}: choose one of {', '.join(METHODS)}")
    task = make_task(cfg, seed)
    names = list(task.init)
    val = lambda p: F.cross_entropy(forward(p, task.xv), task.yv)  # noqa: E731
    found: dict[str, Any] = {}
    if method == "implicit-decay":
        # decay = MAX_DECAY_STEP / lr * sigmoid(raw): bounded so that the decay alone shrinks a
        # weight by at most half a step (lr * decay < MAX_DECAY_STEP): an unbounded decay (exp(raw))
        # can grow until gradient descent at lr diverges, as it does on Fashion-MNIST
        ceiling = MAX_DECAY_STEP / cfg.lr
        start = math.log(START_DECAY / (ceiling - START_DECAY))  # sigmoid^-1(START_DECAY / ceiling)
        raw = nn.ParameterDict({n: nn.Parameter(torch.full_like(p, start))
                                for n, p in task.init.items()})

        def learned_decay(name: str) -> torch.Tensor:
            return ceiling * raw[name].sigmoid()

        def decayed(p: Params, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
            penalty = sum((learned_decay(n) * p[n] * p[n]).sum() for n in p)
            return F.cross_entropy(forward(p, x), y) + 0.5 * penalty

        problem = InnerProblem(decayed, SGD(names, cfg.lr), cfg.warm_steps, task.x, task.y,
                               hyper=raw)
        hyper = list(raw.values())
        result = implicit_hpo(problem, task.init, val, hyper, torch.optim.Adam(hyper, cfg.hyper_lr),
                              hyper_steps=cfg.budget // cfg.warm_steps, terms=cfg.terms,
                              alpha=cfg.lr)
        params, spent = result.params, result.inner_steps
        found["hyperparameters"] = sum(h.numel() for h in hyper)
        learned = torch.cat([learned_decay(n).detach().flatten() for n in raw])
        found["decay_quantiles"] = [float(q) for q in learned.quantile(
            torch.tensor([0.1, 0.5, 0.9, 0.99]))]
    elif method == "unrolled-lr":
        rule = SGD(names, cfg.lr, steps=cfg.run_steps, learnable=True)

        def plain(p: Params, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
            return F.cross_entropy(forward(p, x), y)

        problem = InnerProblem(plain, rule, cfg.run_steps, task.x, task.y)
        rounds = max(1, cfg.budget // cfg.run_steps - 1)  # the last run trains the final network
        unrolled_hpo(problem, task.init, val, [rule.lrs], torch.optim.Adam([rule.lrs],
                                                                            cfg.hyper_lr),
                     hyper_steps=rounds, checkpoint=10)
        with torch.no_grad():
            params = unroll(problem, task.init).params
        spent = (rounds + 1) * cfg.run_steps
        found["hyperparameters"] = rule.lrs.numel()
    elif method == "fixed":
        params, spent = _train(task, cfg.budget, cfg.lr, START_DECAY), cfg.budget
        found.update(lr=cfg.lr, decay=START_DECAY)
    else:
        trials = cfg.budget // cfg.run_steps
        if method == "random":
            g = torch.Generator().manual_seed(10_000 + seed)
            draws = torch.rand(trials, 2, generator=g)
            points = [(_log_uniform(u, LR_RANGE), _log_uniform(v, DECAY_RANGE))
                      for u, v in draws.tolist()]
        else:
            lrs = math.ceil(math.sqrt(trials))  # a lrs x decays grid of at most `trials` points
            decays = trials // lrs
            points = [(_log_uniform(u, LR_RANGE), _log_uniform(v, DECAY_RANGE))
                      for u in _spread(lrs) for v in _spread(decays)]
        best = None
        for lr, decay in points:
            try:
                trained = _train(task, cfg.run_steps, lr, decay)
            except AdaptationError:  # a diverged trial: its steps are spent, it cannot win
                continue
            loss = _score(trained, task.xv, task.yv)[0]
            if best is None or (math.isfinite(loss) and loss < best[0]):
                best = (loss, trained, lr, decay)
        if best is None:
            raise AdaptationError(f"every {method} search trial diverged: narrow LR_RANGE")
        params, spent = best[1], len(points) * cfg.run_steps
        found.update(lr=best[2], decay=best[3], trials=len(points))
    val_loss, val_acc = _score(params, task.xv, task.yv)
    test_loss, test_acc = _score(params, task.xt, task.yt)
    return {"method": method, "seed": seed, "val_loss": val_loss, "val_accuracy": val_acc,
            "test_loss": test_loss, "test_accuracy": test_acc, "inner_steps": spent, **found}


def _spread(count: int) -> list[float]:
    """``count`` evenly spaced points of [0, 1] (its middle for one)."""
    return [i / (count - 1) for i in range(count)] if count > 1 else [0.5]


def _log_uniform(u: float, bounds: tuple[float, float]) -> float:
    lo, hi = (math.log(b) for b in bounds)
    return math.exp(lo + u * (hi - lo))


def compare(cfg: HPOConfig, seeds: int, methods: tuple[str, ...] = METHODS) -> list[dict[str, Any]]:
    """Every method on ``seeds`` seeds: per method the mean and 95% CI of each score, and the
    per-seed results."""
    rows = []
    for method in methods:
        runs = [run_method(cfg, method, seed) for seed in range(seeds)]
        row: dict[str, Any] = {"method": method, "runs": runs,
                               "inner_steps": runs[0]["inner_steps"]}
        for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
            values = torch.tensor([r[key] for r in runs], dtype=torch.float64)
            ci = 1.96 * float(values.std()) / math.sqrt(len(runs)) if len(runs) > 1 else 0.0
            row[key] = {"mean": float(values.mean()), "ci95": ci}
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table (accuracies in %)."""
    lines = ["| method | inner steps | val loss | val accuracy | test loss | test accuracy |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k]['mean']:.4f} ± {r[k]['ci95']:.4f}" for k in ("val_loss",)]
        cells.append(f"{100 * r['val_accuracy']['mean']:.2f} ± "
                     f"{100 * r['val_accuracy']['ci95']:.2f}")
        cells.append(f"{r['test_loss']['mean']:.4f} ± {r['test_loss']['ci95']:.4f}")
        cells.append(f"{100 * r['test_accuracy']['mean']:.2f} ± "
                     f"{100 * r['test_accuracy']['ci95']:.2f}")
        lines.append(f"| {r['method']} | {r['inner_steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["HPOConfig", "METHODS", "START_DECAY", "compare", "make_task", "markdown_table",
           "run_method"]

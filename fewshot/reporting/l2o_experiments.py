"""The learned-optimizer experiments of Andrychowicz et al. (2016) as named, reproducible runs:
problems, protocols, figures.

Problems (``PROBLEMS``): 10-d quadratics; an MLP (one hidden layer of 20 sigmoid units, batch 128)
on MNIST; its variants with 40 units, two hidden layers, ReLU; and on Fashion-MNIST.
Experiments (``EXPERIMENTS``) pair a problem and horizon with the learned optimizer to test
(``l2o-quadratic`` for quadratics, ``l2o-mnist`` for every MLP: the generalization questions).

Protocol of ``run_experiment``: baselines' learning rates are tuned on ``tune_problems`` problems
(``LR_GRID``, lowest mean final loss), then every optimizer runs on the same ``test_problems``
fresh problems (other seeds than any used in meta-training). MLP problems read the dataset's
``train`` split in meta-training and for tuning, and its ``test`` split images for the test
problems.

Usage::

    result = run_experiment("mnist-relu", test_problems=100)
    write_outputs(result, "out/")       # out/mnist-relu.png and out/mnist-relu.json
"""
from __future__ import annotations

import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from episodes.files import atomic_write_bytes, atomic_write_text

from ..checks import check_count
from ..errors import ConfigError, FewshotError
from ..l2o.baselines import BASELINES, LR_GRID, make_baseline, tune_baselines
from ..l2o.metatrain import MetaTrainConfig
from ..l2o.net import LSTMOptimizerConfig
from ..l2o.optimizer import LearnedOptimizer
from ..l2o.problems import MLPFamily, ProblemFamily, QuadraticFamily
from ..l2o.trajectory import run_trajectory
from ..pretrained.learned_optimizers import load_with_manifest
from ..scoring import Z95
from ..training.build import image_arrays

TEST_SEED = 10_000   # + seed: test problems
TUNE_SEED = 20_000   # + seed: baseline-tuning problems


@dataclass(frozen=True)
class ProblemSpec:
    """A problem family by name: quadratics, or an MLP on an image dataset."""

    kind: str                       # "quadratic" or "mlp"
    dataset: str | None = None      # "mnist" / "fashion-mnist" for MLPs
    hidden: tuple[int, ...] = (20,)
    activation: str = "sigmoid"
    description: str = ""


PROBLEMS: dict[str, ProblemSpec] = {
    "quadratic": ProblemSpec("quadratic",
                             description="10-d quadratics ||W theta - y||^2, W, y ~ N(0, 1)"),
    "mnist": ProblemSpec("mlp", "mnist", (20,), "sigmoid",
                         "MNIST, MLP 784-20-10, sigmoid, batch 128"),
    "mnist-40": ProblemSpec("mlp", "mnist", (40,), "sigmoid",
                            "MNIST, MLP 784-40-10, sigmoid, batch 128"),
    "mnist-2layer": ProblemSpec("mlp", "mnist", (20, 20), "sigmoid",
                                "MNIST, MLP 784-20-20-10, sigmoid, batch 128"),
    "mnist-relu": ProblemSpec("mlp", "mnist", (20,), "relu",
                              "MNIST, MLP 784-20-10, ReLU, batch 128"),
    "fashion-mnist": ProblemSpec("mlp", "fashion-mnist", (20,), "sigmoid",
                                 "Fashion-MNIST, MLP 784-20-10, sigmoid, batch 128"),
}


@dataclass(frozen=True)
class Experiment:
    """One figure: a problem, a horizon, and the learned optimizer tested on it."""

    problem: str
    optimizer: str      # pretrained learned optimizer used by default
    steps: int = 100
    question: str = ""


EXPERIMENTS: dict[str, Experiment] = {
    "quadratic": Experiment("quadratic", "l2o-quadratic", 100, "trained and tested on quadratics"),
    "mnist": Experiment("mnist", "l2o-mnist", 100, "trained and tested on the MNIST MLP"),
    "mnist-40": Experiment("mnist-40", "l2o-mnist", 100, "generalization to 40 hidden units"),
    "mnist-2layer": Experiment("mnist-2layer", "l2o-mnist", 100,
                               "generalization to 2 hidden layers"),
    "mnist-relu": Experiment("mnist-relu", "l2o-mnist", 100, "generalization to ReLU"),
    "mnist-200steps": Experiment("mnist", "l2o-mnist", 200,
                                 "generalization to 200 steps (trained on 100)"),
    "fashion-mnist": Experiment("fashion-mnist", "l2o-mnist", 100,
                                "generalization to Fashion-MNIST"),
}


def training_preset(problem: str) -> MetaTrainConfig:
    """The meta-training protocol for ``problem``: the thesis' values (epochs of 100 iterations).

    Quadratics: 100 epochs, 128 problems per iteration (the paper's batch), 100 validation problems.
    MLPs: 20 epochs, one problem per iteration, 20 validation problems (each a 100-step MLP
    training). Both use preprocessing with p = 10 and output scale 0.1 (the thesis fed raw gradients
    on quadratics; one setting for both keeps the optimizers comparable). Adam's learning rate on
    phi (the thesis picked it by random search in [1e-5, 1]): 1e-3 for quadratics, 1e-2 for MLPs.
    Why these choices (the trials behind them): bench/NOTES.md.
    """
    spec = _spec(problem)
    if spec.kind == "quadratic":
        return MetaTrainConfig(net=LSTMOptimizerConfig(preprocess=True, p=10.0, output_scale=0.1),
                               epochs=100,
                               problems_per_iteration=128, val_problems=100)
    return MetaTrainConfig(net=LSTMOptimizerConfig(preprocess=True, p=10.0, output_scale=0.1),
                           epochs=20,
                           problems_per_iteration=1, val_problems=20, lr=1e-2)


def _spec(problem: str) -> ProblemSpec:
    if problem not in PROBLEMS:
        raise ConfigError(f"unknown problem {problem!r}: choose one of {', '.join(PROBLEMS)}")
    return PROBLEMS[problem]


def build_family(problem: str, split: str = "train",
                 root: str | os.PathLike | None = None) -> ProblemFamily:
    """The ``ProblemFamily`` named ``problem`` (MLPs read ``split`` of their dataset from
    ``root``)."""
    spec = _spec(problem)
    if spec.kind == "quadratic":
        return QuadraticFamily()
    assert spec.dataset is not None, f"MLP problem {problem} names no dataset"
    x, y = image_arrays(spec.dataset, split, root)
    return MLPFamily(x, y, hidden=spec.hidden, activation=spec.activation, name=problem)


@dataclass
class Curve:
    """Mean loss per step over the test problems with its 95% CI half-width."""

    mean: list[float | None]  # None: not finite (JSON has no inf/nan)
    ci95: list[float | None]
    final: float | None
    final_ci95: float | None
    lr: float | None = None
    grid: dict[str, float | None] = field(default_factory=dict)


def _curve(losses: torch.Tensor, lr: float | None = None, grid: dict | None = None) -> Curve:
    losses = losses.double()
    n = losses.shape[0]
    mean = losses.mean(0)
    ci = Z95 * losses.std(0, unbiased=True) / math.sqrt(n) if n > 1 else torch.zeros_like(mean)
    def clean(v: Any) -> float | None:  # JSON has no inf/nan
        return float(v) if math.isfinite(float(v)) else None

    return Curve([clean(v) for v in mean], [clean(v) for v in ci], clean(mean[-1]), clean(ci[-1]),
                 lr,
                 {f"{k:g}": clean(v) for k, v in (grid or {}).items()})


def run_experiment(name: str, *, optimizer: str | os.PathLike | None = None,
                   test_problems: int = 100,
                   tune_problems: int = 20, steps: int | None = None, seed: int = 0,
                   root: str | os.PathLike | None = None, progress: bool = False) -> dict[str, Any]:
    """Tune the baselines, run them and the learned optimizer on fresh test problems; returns the
    result dict.

    ``progress=True``: a tqdm bar of the optimizer runs (tuning grid, then test) on stderr; off by
    default.
    """
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    check_count(test_problems, "test_problems (a CI needs two)", 2)
    check_count(tune_problems, "tune_problems", 2)
    exp = EXPERIMENTS[name]
    steps = check_count(exp.steps if steps is None else steps, "steps")
    source = optimizer if optimizer is not None else exp.optimizer
    net, manifest = load_with_manifest(source)
    started = time.perf_counter()
    tune_family = build_family(exp.problem, "train", root)
    test_family = tune_family if exp.problem == "quadratic" else build_family(exp.problem, "test",
                                                                              root)
    tuning = tune_family.sample(tune_problems, steps,
                                torch.Generator().manual_seed(TUNE_SEED + seed))
    test = test_family.sample(test_problems, steps, torch.Generator().manual_seed(TEST_SEED + seed))
    runs = len(BASELINES) * len(LR_GRID) + 1 + len(BASELINES)
    with tqdm(total=runs, desc=name, unit="run", disable=not progress, dynamic_ncols=True,
              leave=False) as bar:
        tuned = tune_baselines(tuning, steps, tick=bar.update)
        curves: dict[str, Curve] = {
            "learned": _curve(
                run_trajectory(test, lambda ps: LearnedOptimizer(ps, net=net), steps))}
        bar.update()
        for b in BASELINES:
            curves[b] = _curve(run_trajectory(test, make_baseline(b, tuned[b].lr), steps),
                               tuned[b].lr,
                               tuned[b].grid)
            bar.update()
    return {
        "experiment": name,
        "question": exp.question,
        "problem": exp.problem,
        "problem_description": PROBLEMS[exp.problem].description,
        "steps": steps,
        "test_problems": test_problems,
        "tune_problems": tune_problems,
        "seed": seed,
        "lr_grid": list(LR_GRID),
        "learned_optimizer": {"name": manifest.get("name"), "trained_on": manifest.get("problem"),
                              "sha256": manifest.get("sha256")},
        "seconds": round(time.perf_counter() - started, 1),
        "curves": {k: vars(v) for k, v in curves.items()},
        "final": {k: {"mean": v.final, "ci95": v.final_ci95, "lr": v.lr}
                  for k, v in curves.items()},
    }


def plot_experiment(result: dict[str, Any]) -> bytes:
    """The learning-curve PNG (log loss vs step; band = 95% CI; learned solid, baselines dashed)."""
    # local: matplotlib costs ~0.5 s to import and only the experiment command needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    labels = {"learned": "LSTM (learned)", "sgd": "SGD", "rmsprop": "RMSprop", "adam": "ADAM",
              "nag": "NAG"}
    for key, curve in result["curves"].items():
        mean = [math.nan if v is None else v for v in curve["mean"]]
        ci = [math.nan if v is None else v for v in curve["ci95"]]
        steps = list(range(len(mean)))
        label = labels.get(key, key) + ("" if curve.get("lr") is None else f" (lr {curve['lr']:g})")
        style = "-" if key == "learned" else "--"
        (line,) = ax.plot(steps, mean, style, label=label,
                          linewidth=2.0 if key == "learned" else 1.4)
        lo = [max(m - c, 1e-12) for m, c in zip(mean, ci)]
        hi = [m + c for m, c in zip(mean, ci)]
        ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{result['experiment']}: {result['problem_description']}\n"
                 f"mean of {result['test_problems']} test problems, band = 95% CI", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(result: dict[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<out>/<experiment>.png`` and ``.json`` (atomically); returns their paths."""
    out = Path(out_dir)
    png = atomic_write_bytes(out / f"{result['experiment']}.png", plot_experiment(result),
                             error=FewshotError)
    js = atomic_write_text(out / f"{result['experiment']}.json",
                           json.dumps(result, indent=1) + "\n",
                           error=FewshotError)
    return png, js


def final_table(results: list[dict[str, Any]]) -> str:
    """Markdown table of final losses (mean ± 95% CI): one row per experiment, learned vs each tuned
    baseline."""
    head = "| experiment | steps | learned | " + " | ".join(f"{b} (lr)"
                                                            for b in BASELINES) + " | best |"
    lines = [head, "|" + "---|" * (4 + len(BASELINES))]
    def fmt(f: dict) -> str:
        return "diverged" if f["mean"] is None else f"{f['mean']:.3g} ± {f['ci95']:.2g}"

    for r in results:
        final = r["final"]
        finite = {k: v["mean"] for k, v in final.items() if v["mean"] is not None}
        best = min(finite, key=lambda k: finite[k]) if finite else "–"
        cells = [fmt(final["learned"])] + [f"{fmt(final[b])} ({final[b]['lr']:g})"
                                           for b in BASELINES]
        lines.append(f"| {r['experiment']} | {r['steps']} | " + " | ".join(cells) + f" | {best} |")
    return "\n".join(lines)

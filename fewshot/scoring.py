"""Scoring a learner on episodes: its per-episode metric (``learner.evaluate``) summarized as the
mean and 95% confidence interval.

``ci95 = 1.96 * s / sqrt(n)`` where ``s`` is the **sample** standard deviation (``ddof=1``, Bessel's
correction) of the per-episode values. (The MAML reference code used ``np.std``, the population
std, ``ddof=0``; for n=600 the two differ by a factor sqrt(600/599) = 1.0008.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from tqdm import tqdm

from .errors import FewshotError

Z95 = 1.96


@dataclass(frozen=True)
class Summary:
    """Mean of per-episode values with its 95% confidence half-width (``mean ± ci95``)."""

    mean: float
    ci95: float
    n: int
    std: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.ci95:.4f} (n={self.n})"


def summarize(values: Sequence[float] | torch.Tensor) -> Summary:
    """Mean and 95% CI ``1.96 * sample_std / sqrt(n)`` of per-episode values (float64)."""
    t = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = t.numel()
    if n == 0:
        raise FewshotError("cannot summarize zero episodes: evaluate at least one episode")
    if not bool(torch.isfinite(t).all()):
        raise FewshotError(
            "evaluation produced non-finite values: the model diverged; check the checkpoint")
    mean = float(t.mean())
    std = float(t.std(unbiased=True)) if n > 1 else 0.0
    return Summary(mean=mean, ci95=Z95 * std / math.sqrt(n), n=n, std=std)


def evaluate_learner(learner, batches: Iterable, *, steps: int | None = None,
                     device: str | torch.device | None = None, metric: str | None = None,
                     progress: bool = False, total: int | None = None) -> tuple[str, Summary]:
    """Run ``learner.evaluate`` over every batch; returns (metric name, Summary over all tasks).

    ``metric`` defaults to ``accuracy`` for classification and ``mse`` for regression batches.
    Adaptation needs gradients, so this does not run under ``no_grad``; the learner is put in eval
    mode. ``progress=True`` shows a tqdm bar of episodes on stderr (``total``: the episode count, if
    known); off by default, so a library call prints nothing.
    """
    name, values = episode_values(learner, batches, steps=steps, device=device, metric=metric,
                                  progress=progress,
                                  total=total)
    if not values.numel():
        raise FewshotError("no evaluation episodes: ask for at least one episode")
    return name, summarize(values)


def episode_values(learner, batches: Iterable, *, steps: int | None = None,
                   device: str | torch.device | None = None,
                   metric: str | None = None, progress: bool = False,
                   total: int | None = None) -> tuple[str, torch.Tensor]:
    """(metric name, float64 CPU tensor of the per-episode values) of ``learner.evaluate`` over
    ``batches`` (what :func:`evaluate_learner` summarizes; separate so that several processes can
    pool their values)."""
    values: list[torch.Tensor] = []
    name = metric or "accuracy"
    was_training = learner.training
    learner.eval()
    bar = tqdm(total=total, unit="episode", desc="evaluating", disable=not progress,
               dynamic_ncols=True, leave=False)
    try:
        for batch in batches:
            if device is not None:
                batch = batch.to(device)
            name = metric or ("mse" if batch.ways is None else "accuracy")
            out = learner.evaluate(batch, steps=steps)
            if name not in out:
                raise FewshotError(f"learner.evaluate returned no '{name}' (got {sorted(out)}): "
                                   "pass metric= one of those")
            values.append(out[name].detach().double().cpu().flatten())
            bar.update(len(batch))
    finally:
        bar.close()
        learner.train(was_training)
    return name, torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)

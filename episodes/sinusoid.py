"""Sinusoid regression tasks (Finn et al. 2017, MAML section 5.1): the task source that needs no
data.

Usage::

    tasks = SinusoidTasks(shots=10, queries=10, seed=0)
    batch = tasks.sample(25)  # support_x [25, 10, 1], support_y [25, 10, 1]
    # params["amplitude"], params["phase"]: [25]
    batch, params = tasks.sample(25, return_params=True)

Each task is ``y = amplitude * sin(x - phase)`` with amplitude ~ U[0.1, 5.0], phase ~ U[0, pi] and
inputs x ~ U[-5, 5] (the MAML paper's ranges, overridable), all drawn from one seeded CPU generator.
"""
from __future__ import annotations

import math

import torch

from .errors import DataError
from .generator_state import restore_generator
from .sampler import check_positive
from .types import TaskBatch


def _check_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a (low, high) pair of numbers, got {value!r}: "
                        f"pass e.g. {name}=(0.0, 1.0)") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise DataError(
            f"{name} must be a finite (low, high) pair with low <= high, got {value!r}: "
            f"pass e.g. {name}=(0.0, 1.0)")
    return lo, hi


class SinusoidTasks:
    """Seeded sinusoid regression tasks: ``shots`` support and ``queries`` query points per task."""

    def __init__(
        self,
        shots: int,
        queries: int,
        seed: int,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        self.shots = check_positive("shots", shots)
        self.queries = check_positive("queries", queries)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DataError(f"seed must be an integer, got {seed!r}: pass e.g. seed=0")
        self.seed = seed
        self.amplitude = _check_range("amplitude", amplitude)
        self.phase = _check_range("phase", phase)
        self.x_range = _check_range("x_range", x_range)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

    @staticmethod
    def function(x: torch.Tensor, amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """``amplitude * sin(x - phase)`` with per-task ``amplitude``/``phase`` ``[B]`` and ``x [B,
        n, 1]``."""
        return amplitude.view(-1, 1, 1) * torch.sin(x - phase.view(-1, 1, 1))

    def sample(self, batch_size: int, return_params: bool = False):
        """The next ``batch_size`` tasks; with ``return_params=True`` also ``{"amplitude": [B],
        "phase": [B]}``."""
        check_positive("batch_size", batch_size)
        g = self.generator

        def uniform(shape: tuple[int, ...], lo_hi: tuple[float, float]) -> torch.Tensor:
            lo, hi = lo_hi
            return torch.rand(shape, generator=g) * (hi - lo) + lo

        amplitude = uniform((batch_size,), self.amplitude)
        phase = uniform((batch_size,), self.phase)
        x = uniform((batch_size, self.shots + self.queries, 1), self.x_range)
        y = self.function(x, amplitude, phase)
        k = self.shots
        batch = TaskBatch(x[:, :k].contiguous(), y[:, :k].contiguous(), x[:, k:].contiguous(),
                          y[:, k:].contiguous(),
                          None)
        return (batch, {"amplitude": amplitude, "phase": phase}) if return_params else batch

    def state_dict(self) -> dict:
        """Generator state (for bit-identical resume)."""
        return {"generator": self.generator.get_state(), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`: the next tasks continue the saved run."""
        restore_generator(self.generator, state, "SinusoidTasks")

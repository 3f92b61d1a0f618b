"""Per-task noise for rules that sample (MT-net's masks), drawn from the learner's own generator.

Why a module of its own: the draws must be reproducible across resumes and processes, so the
generator state lives in a buffer (saved in checkpoints: a resumed run draws the same noise) and
a data-parallel part (``GradientLearner.shard_tasks``) draws the whole meta-batch's noise and keeps
its own rows, so every process's generator stays in step and the union of the parts gets the noise
one process would draw.
"""
from __future__ import annotations

import torch


def draw_noise(state: torch.Tensor, tasks: int, size: int, shard: tuple[int, int],
               dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """``[tasks, size]`` U(0, 1) draws for part ``shard = (rank, world)`` of a meta-batch, from the
    generator state ``state`` (a CPU generator's ``get_state()``), which is advanced in place."""
    gen = torch.Generator()
    gen.set_state(state.cpu())
    rank, world = shard
    draws = torch.rand(tasks * world, size, generator=gen, dtype=dtype)
    state.copy_(gen.get_state())
    return draws[rank * tasks:(rank + 1) * tasks].to(device)

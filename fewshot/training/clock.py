"""What a training run cost: wall and CPU time summed over its sessions, and the machine it ran on.

Checkpoints carry the running totals (``clock`` entry), so a run that was stopped and resumed
reports its whole cost, and ``fewshot pretrained publish`` copies it into the manifest: models
trained under a stated budget can then be compared by what they really used, not by iteration
counts.  The clock is kept out of the training state that resume restores bit for bit (it is not in
``extra`` nor in the metrics log), since two runs never take the same time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from episodes.files import hardware


@dataclass
class Session:
    """One process's stretch of a run: where it started, on what."""

    iteration: int
    wall_start: float = field(default_factory=time.perf_counter)
    cpu_start: float = field(default_factory=time.process_time)
    processes: int = 1
    device: str = "cpu"
    threads: int = field(default_factory=torch.get_num_threads)
    hardware: str = field(default_factory=hardware)  # read once: every checkpoint write records it

    def record(self, iteration: int) -> dict[str, Any]:
        return {"from_iteration": self.iteration, "to_iteration": int(iteration),
                "wall_seconds": time.perf_counter() - self.wall_start,
                "cpu_seconds": time.process_time() - self.cpu_start,
                "processes": self.processes, "threads": self.threads, "device": self.device,
                "hardware": self.hardware}


class TrainingClock:
    """Sessions of earlier processes (from a checkpoint) plus the current one.

    ``cpu_seconds`` is this process's user+system time (all its threads), validation and checkpoint
    writes included; under ``torchrun`` it is rank 0's, and ``processes`` says how many ran
    alongside.
    """

    def __init__(self, start_iteration: int, *, processes: int = 1, device: str = "cpu",
                 earlier: Any = None) -> None:
        self.earlier = [dict(s) for s in earlier.get("sessions", [])] if isinstance(earlier,
                                                                                    dict) else []
        self.current = Session(start_iteration, processes=processes, device=device)

    def state(self, iteration: int) -> dict[str, Any]:
        """The ``clock`` checkpoint entry at ``iteration``: every session, and their totals."""
        sessions = [*self.earlier, self.current.record(iteration)]
        return {"sessions": sessions, **totals(sessions)}


def totals(sessions: list[dict[str, Any]]) -> dict[str, float]:
    wall = sum(float(s.get("wall_seconds", 0.0)) for s in sessions)
    cpu = sum(float(s.get("cpu_seconds", 0.0)) for s in sessions)
    return {"wall_seconds": wall, "cpu_seconds": cpu}


def summary(clock: Any) -> dict[str, Any] | None:
    """The manifest's ``training_time``: minutes of wall and CPU time, and where they were spent
    (None for runs written before checkpoints carried a clock)."""
    if not isinstance(clock, dict) or not clock.get("sessions"):
        return None
    sessions = clock["sessions"]
    machines = sorted({str(s.get("hardware")) for s in sessions})
    return {"wall_minutes": round(float(clock["wall_seconds"]) / 60, 1),
            "cpu_minutes": round(float(clock["cpu_seconds"]) / 60, 1),
            "sessions": len(sessions),
            "processes": max(int(s.get("processes", 1)) for s in sessions),
            "threads": max(int(s.get("threads", 1)) for s in sessions),
            "device": sessions[-1].get("device"),
            "hardware": "; ".join(machines)}

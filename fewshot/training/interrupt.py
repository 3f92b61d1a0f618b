"""Stopping a training run on SIGINT (Ctrl-C) or SIGTERM (a cluster's preemption) without losing it.

Inside :class:`StopSignals` both signals only set a flag. The loop reads it once per iteration,
after the iteration's own work; under torchrun or ``--nproc`` the ranks take the largest of their
flags (one small all-reduce), so every rank stops after the same iteration even when only one
process got the signal. The loop then writes ``last.pt`` at that iteration (atomically, as every
checkpoint) and raises :class:`TrainingInterrupted`, which ``fewshot train`` turns into one line
naming the checkpoint and the command that resumes it, and the exit status of the signal (130 for
SIGINT, 143 for SIGTERM) that requeue scripts test for. The resumed run is bit-identical to an
uninterrupted one.

A second signal more than ``ABORT_AFTER_S`` seconds after the first stops at once, without saving
(for a run stuck in a long validation); one within that time is the same request arriving twice (a
terminal sends Ctrl-C to every process of the job, and the ``--nproc`` launcher forwards it again).
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from ..runtime import distributed
from ..runtime.distributed import Ranks

SIGNALS = (signal.SIGINT, signal.SIGTERM)
ABORT_AFTER_S = 2.0


class TrainingInterrupted(Exception):
    """The run stopped on a signal after ``iteration``, its state saved in ``checkpoint``.

    ``exit_status`` is the shell's convention for a process ended by the signal (128 + its
    number)."""

    def __init__(self, signum: int, iteration: int, checkpoint: Path) -> None:
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        super().__init__(
            f"{signal.Signals(signum).name} at iteration {iteration}: saved {checkpoint}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class StopSignals:
    """While active, SIGINT and SIGTERM request a stop instead of ending the process (module
    docstring).

    Usage::

        with StopSignals() as stop:
            for it in ...:
                ...
                if stop.requested(ranks):
                    ...save, then raise TrainingInterrupted(stop.signum, it, path)

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self, announce: bool = True) -> None:
        self.signum = 0
        self.announce = announce
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if not self.signum:
            self.signum, self._first_at = signum, now
            if self.announce:
                print(
                    f"{signal.Signals(signum).name}: stopping after this iteration and saving the "
                    "run (a second "
                    "signal stops at once, without saving)", file=sys.stderr, flush=True)
            return
        if now - self._first_at > ABORT_AFTER_S:
            raise KeyboardInterrupt

    def requested(self, ranks: Ranks) -> int:
        """The signal every rank agrees to stop for (0: none): this process's own, or any rank's."""
        self.signum = distributed.max_int(self.signum, ranks)
        return self.signum

"""``fewshot train --nproc N|auto``: start N local training processes with torch.distributed's own
launcher.

The processes are started by ``torch.distributed.launcher.api.elastic_launch`` (the elastic agent
that ``torchrun`` is built on) with the configuration of ``torchrun --standalone
--nproc_per_node=N``: a local c10d rendezvous on a free port, no restarts.  Each process runs
``python -m fewshot ARGS`` with the environment torchrun gives it (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ...), so the training code path is exactly the one of a torchrun job
(:mod:`fewshot.runtime.distributed`); this module only chooses N, the threads of each process, and
starts them.

How ``auto`` chooses (measured, see docs/scale-out.md): on CPU, as many processes as there are cores
(reduced to the largest count that divides the meta-batch), one torch thread each, the spare cores
(when there are more cores than tasks) going to threads.  Processes split the meta-batch's *tasks*,
which are independent until one all-reduce of the meta-gradient per iteration; intra-op threads
split each convolution, whose work at Omniglot's shape is a few hundred microseconds, so their
fork/join overhead grows with the thread count while the work per op does not.  On 2 cores processes
already win (omniglot-5w1s-maml: 4.53 vs 4.31 it/s), and the gap can only widen with more cores.  On
CUDA: one process per GPU (again reduced to a divisor of the meta-batch).

The default, without ``--nproc`` (:func:`default_layout`): on CPU, the same processes with one torch
thread each, since torch's default (one thread per core in every process) makes threads spin against
each other and against any other job on the machine, for kernels too small to split (bench/ has the
quiet and busy timings). ``OMP_NUM_THREADS`` or ``--threads`` set by the user keep one process with
that many threads.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch

from ..errors import ConfigError, FewshotError


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, else all of
    them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def check_split(meta_batch: int, processes: int) -> None:
    """ConfigError unless the (global) meta-batch divides evenly over ``processes``."""
    if processes > 1 and meta_batch % processes:
        raise ConfigError(
            f"meta_batch={meta_batch} does not split evenly over {processes} processes: use a "
            f"meta_batch divisible by {processes} (--set meta_batch=N) or another "
            "number of processes")


def _largest_divisor_up_to(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def parse_nproc(value: str) -> int | None:
    """``--nproc``'s value: a whole number >= 1, or None for ``auto``."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--nproc must be a number of processes >= 1 or auto, got {value!r}")
    return n


def choose_nproc(value: str, meta_batch: int, device: torch.device, *,
                 cores: int | None = None) -> int:
    """The number of processes ``--nproc value`` means for this meta-batch and device (see the
    module doc)."""
    n = parse_nproc(value)
    if n is None:
        slots = torch.cuda.device_count() if device.type == "cuda" else (cores or cpu_cores())
        n = _largest_divisor_up_to(meta_batch, slots)
    check_split(meta_batch, n)
    return n


def user_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """The torch threads the user asked for with ``OMP_NUM_THREADS`` (a whole number >= 1), else
    None."""
    value = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


@dataclass(frozen=True)
class Layout:
    """How a command uses a machine's CPU: ``processes`` data-parallel processes of ``threads``
    torch threads each (``threads`` None: torch's own default, what the user's ``OMP_NUM_THREADS``
    set)."""

    processes: int
    threads: int | None

    def describe(self) -> str:
        each = "OMP_NUM_THREADS torch threads"
        if self.threads:
            each = f"{self.threads} torch thread{'s' if self.threads != 1 else ''}"
        return f"{self.processes} process{'es' if self.processes != 1 else ''}, {each} each"


def default_layout(meta_batch: int | None, device: torch.device, *, threads: int | None = None,
                   environ: Mapping[str, str] | None = None, cores: int | None = None) -> Layout:
    """The layout a command uses when the user names none (module docstring): on CPU one process per
    core (a divisor of the meta-batch; ``meta_batch`` None: one process, as evaluation), each with
    one torch thread, unless ``threads`` (``--threads``) or ``OMP_NUM_THREADS`` says otherwise,
    which keep one process with that many threads; off the CPU one process, torch's threads."""
    if device.type != "cpu":
        return Layout(1, threads)
    if threads is not None or user_threads(environ) is not None:
        return Layout(1, threads)
    processes = 1 if meta_batch is None else choose_nproc("auto", meta_batch, device, cores=cores)
    return Layout(processes, 1)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Inside the block torch uses ``threads`` intra-op threads (None: unchanged); restored
    afterwards."""
    if threads is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def threads_per_process(processes: int, *, cores: int | None = None) -> int:
    """Torch threads for each of ``processes``: the cores shared out evenly (at least one)."""
    return max(1, (cores or cpu_cores()) // processes)


class LaunchInterrupted(Exception):
    """The processes stopped on a signal (SIGINT, SIGTERM) after saving the run; ``exit_status`` 128
    + signal."""

    def __init__(self, exit_status: int) -> None:
        super().__init__(f"stopped by a signal (exit status {exit_status})")
        self.exit_status = exit_status


# Seconds the launcher waits, after a signal, for its processes to save the run and exit (an
# iteration
# and at most one validation) before it kills them.
SHUTDOWN_TIMEOUT_S = 600
INTERRUPTED_STATUSES = (128 + 2, 128 + 15)
# Set in the launched processes: how many the launcher started.
PROCESSES_ENV = "FEWSHOT_LAUNCHED_PROCESSES"


def launch(processes: int, argv: Sequence[str], *, threads: int) -> None:
    """Run ``python -m fewshot *argv`` in ``processes`` local processes, as ``torchrun --standalone
    --nproc_per_node=processes`` would, each with ``threads`` torch threads (``OMP_NUM_THREADS``;
    one the user exported is kept).  Returns when all have exited; FewshotError (one line) when one
    failed (the failing process has printed its own error above); LaunchInterrupted when a signal
    stopped them (to the launcher, which passes it on, or to the processes themselves), which then
    saved the run."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes,
                          run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    if hasattr(config, "shutdown_timeout"):  # older torch: the agent waits its fixed 30 s
        config.shutdown_timeout = SHUTDOWN_TIMEOUT_S
    # the agent's log lines repeat what the error line says (its modules' loggers set their own
    # levels)
    quiet = [logging.getLogger(name)
             for name in ("torch.distributed.elastic", *logging.root.manager.loggerDict)
             if name.startswith("torch.distributed.elastic")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    saved = os.environ.get("OMP_NUM_THREADS")
    if saved is None:  # the children inherit the environment of this process
        os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ[PROCESSES_ENV] = str(processes)  # what a process names in its resume command
    try:
        elastic_launch(config, sys.executable)("-m", "fewshot", *argv)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode in INTERRUPTED_STATUSES:
            raise LaunchInterrupted(failure.exitcode) from None
        raise FewshotError(
            f"training process {rank} of {processes} failed (exit code {failure.exitcode}) and "
            "the others were stopped: its error is printed above") from None
    except SignalException as exc:
        raise LaunchInterrupted(128 + int(exc.sigval)) from None
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
        os.environ.pop(PROCESSES_ENV, None)
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)

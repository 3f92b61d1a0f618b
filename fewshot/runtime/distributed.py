"""Data-parallel meta-training over processes with ``torch.distributed``, as launched by
``torchrun``.

Task parallelism: each process (rank) adapts and back-propagates its share of the meta-batch
(``episodes.ShardedSource``), then the meta-gradients are averaged with one all-reduce, so every
rank takes the same optimizer step.  Why an explicit all-reduce and not ``DistributedDataParallel``:
DDP reduces gradients from hooks armed by *its own* ``forward``, once per backward; our learners run
the model functionally (``torch.func.functional_call`` on the inner module, bypassing any wrapper's
``forward``) and back-propagate task by task (``meta_backward``: several backward passes per
iteration, to keep the memory of one task), which DDP would either miss or reduce once per task.
One flat all-reduce after the last task is also the least communication there is: the gradient
size once per iteration (bench/NOTES.md has the measured cost).  Batch-norm running statistics (the
mean over the rank's tasks after a training step) are averaged the same way, so buffers stay
identical on every rank; a fingerprint check at every checkpoint makes any divergence an error.

The group comes from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``): backend NCCL when training on CUDA (each process on GPU
``LOCAL_RANK``), gloo on CPU.  Without that environment everything here is a no-op for one process.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterable, NoReturn

import torch
import torch.distributed as dist

from episodes.errors import DataError

from ..checks import check_number
from ..errors import ConfigError, FewshotError

# seconds a collective may wait for the other ranks before the job fails (instead of hanging): a
# rank
# that dies is normally noticed by torchrun at once; this bounds the rarer silent stall
DEFAULT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job: ``rank`` of ``world`` processes (``local_rank`` on its
    node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    # whether ``setup`` created the process group (and ``teardown`` ends it)
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes files, logs and progress bars."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, count: int) -> tuple[int, int]:
        """``(start, stop)``: this rank's contiguous share of ``count`` items (sizes differ by at
        most one)."""
        base, extra = divmod(count, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)


SINGLE = Ranks()


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={value!r} is not an integer: launch with torchrun, "
            "which sets it") from None


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return (_env_int("WORLD_SIZE") or 1) > 1 or (dist.is_available() and dist.is_initialized()
                                                 and dist.get_world_size() > 1)


def is_main_process() -> bool:
    """Whether this process is rank 0 (or the only one): the one that prints results."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return (_env_int("RANK") or 0) == 0


def setup(device: torch.device, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[Ranks,
                                                                                  torch.device]:
    """Join the job's process group (if launched by torchrun) and return ``(ranks, device)``.

    ``device`` is the resolved training device; on CUDA each process takes GPU ``LOCAL_RANK``.  A
    group the caller already initialised is used as it is (and left open by :func:`teardown`).
    """
    if not launched():
        return SINGLE, device
    if not dist.is_available():
        raise ConfigError(
            "this PyTorch build has no torch.distributed: run one process (no torchrun)")
    check_number(timeout_s, "the distributed timeout (seconds)", above=0)
    local_rank = _env_int("LOCAL_RANK") or 0
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} GPUs: "
                "start at "
                "most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as exc:
            raise FewshotError(
                f"cannot join the torch.distributed job ({backend}): {str(exc).splitlines()[0]}: "
                "launch with torchrun (e.g. torchrun --nproc_per_node=2 -m fewshot "
                "train ...)") from exc
        owns = True
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, owns), device


def teardown(ranks: Ranks) -> None:
    """Leave the process group that :func:`setup` created (after the ranks meet, so none exits
    early)."""
    if ranks.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def leave(status: int) -> NoReturn:
    """End this rank of a torchrun job with ``status``, skipping the interpreter's finalization.

    Why: once a gloo group has been used, tearing the interpreter down can abort the process
    ("terminate called without an active exception", SIGABRT) from a C++ destructor that runs after
    the last Python frame is gone, even after :func:`teardown`; torchrun then reports the job failed
    although every rank finished its work (intermittent; bench/NOTES.md, "A rank's exit").  A rank
    that is done therefore flushes its streams and leaves with ``os._exit``.  Files, locks and the
    process group must be closed before (as :func:`fewshot.train` and the ``fewshot`` command do);
    atexit handlers do not run.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)


def barrier(ranks: Ranks) -> None:
    if ranks.active:
        dist.barrier()


def _comm_device(tensors: list[torch.Tensor]) -> torch.device:
    return tensors[0].device if tensors else torch.device("cpu")


def mean_(tensors: Iterable[torch.Tensor], ranks: Ranks) -> None:
    """Replace each tensor by its mean over the ranks, in place, with one flat all-reduce per
    dtype."""
    if not ranks.active:
        return
    by_dtype: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault((t.dtype, t.device), []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        flat.div_(ranks.world)
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n


def average_gradients(params: Iterable[torch.Tensor], ranks: Ranks) -> None:
    """Average ``.grad`` of ``params`` over the ranks (a missing gradient counts as zeros, so every
    rank takes part in the same all-reduce even when one rank's tasks left a parameter
    untouched)."""
    if not ranks.active:
        return
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    with torch.no_grad():
        mean_(grads, ranks)


def average_buffers(buffers: list[torch.Tensor], before: list[torch.Tensor], ranks: Ranks) -> None:
    """Make each of ``buffers`` (e.g. batch-norm running statistics, as the ranks' training steps
    left them) ``before + mean over ranks of (buffer - before)``: the mean of the ranks' updates,
    and exactly ``before`` where no rank changed it (a plain mean of equal values can move by an
    ulp)."""
    if not ranks.active or not buffers:
        return
    with torch.no_grad():
        deltas = [b - b0 for b, b0 in zip(buffers, before)]
        mean_(deltas, ranks)
        for b, b0, d in zip(buffers, before, deltas):
            b.copy_(b0 + d)


def max_int(value: int, ranks: Ranks) -> int:
    """The largest of the ranks' ``value`` (on every rank): e.g. whether any rank was asked to
    stop."""
    if not ranks.active:
        return value
    nccl = dist.get_backend() == "nccl"
    t = torch.tensor([value], dtype=torch.int64,
                     device=torch.device("cuda", torch.cuda.current_device())
                     if nccl else torch.device("cpu"))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def mean_scalars(values: dict[str, float], ranks: Ranks) -> dict[str, float]:
    """The mean over ranks of each named float (every rank passes the same names)."""
    if not ranks.active or not values:
        return values
    names = list(values)
    t = torch.tensor([values[k] for k in names], dtype=torch.float64)
    mean_([t], ranks)
    return dict(zip(names, t.tolist()))


def gather(values: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """All ranks' 1-d ``values`` concatenated in rank order (lengths may differ by rank), on every
    rank."""
    if not ranks.active:
        return values
    values = values.detach().double().reshape(-1).cpu()
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(ranks.world)]
    dist.all_gather(sizes, torch.tensor([values.numel()], dtype=torch.int64))
    longest = int(max(int(s) for s in sizes))
    padded = torch.zeros(longest, dtype=torch.float64)
    padded[:values.numel()] = values
    parts = [torch.zeros(longest, dtype=torch.float64) for _ in range(ranks.world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:int(n)] for p, n in zip(parts, sizes)])


def from_main(make: Any, ranks: Ranks) -> Any:
    """``make()`` run on rank 0 only, its result (or its FewshotError) given to every rank.

    Used for what only rank 0 may touch (reading a run folder it locks).  Every rank raises the same
    one-line error (FewshotError or DataError) when rank 0's ``make`` fails, so no rank is left
    waiting.
    """
    if not ranks.active:
        return make()
    box: list[Any] = [None]
    error: Exception | None = None
    if ranks.main:
        try:
            box[0] = ("ok", make())
        except (FewshotError, DataError) as exc:
            error = exc
            box[0] = ("error", type(exc).__name__, str(exc))
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    if box[0][0] == "error":
        kinds = {cls.__name__: cls for cls in _error_classes()}
        raise kinds.get(box[0][1], FewshotError)(box[0][2])
    return box[0][1]


def _error_classes() -> list[type[Exception]]:
    out: list[type[Exception]] = []
    todo: list[type[Exception]] = [FewshotError, DataError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def check_in_sync(module: torch.nn.Module, ranks: Ranks, what: str) -> None:
    """FewshotError unless ``module``'s parameters and buffers are bit-identical on every rank
    (compared by a float64 fingerprint: sum and weighted sum of every tensor)."""
    if not ranks.active:
        return
    with torch.no_grad():
        parts = []
        for t in [*module.parameters(), *module.buffers()]:
            flat = t.detach().reshape(-1).double()
            weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
            parts.append(torch.stack([flat.sum(), (flat * weights).sum()]))
        mine = torch.cat(parts).cpu() if parts else torch.zeros(1, dtype=torch.float64)
        everyone = [torch.zeros_like(mine) for _ in range(ranks.world)]
        dist.all_gather(everyone, mine)
    bad = [r for r, other in enumerate(everyone) if not torch.equal(other, everyone[0])]
    if bad:
        raise FewshotError(
            f"{what}: the meta-parameters or buffers of rank(s) {bad} differ from rank 0's: the "
            "processes diverged (different data, code or PyTorch versions on the "
            "nodes?)")

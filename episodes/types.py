"""Data containers shared by datasets, samplers and learners.

Usage::

    split = ClassSplit(data, class_offsets, class_names)     # e.g. uint8 images [M, C, H, W]
    batch = TaskBatch(sx, sy, qx, qy)                          # [B, N*K, ...] etc.
    one = batch.task(0)                                        # a single Task

Their ``repr``s are one short line of sizes and shapes (a dataclass's default would print every
tensor).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .errors import DataError


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _device_note(t: torch.Tensor) -> str:
    """``, device=cuda:0`` for tensors off the CPU (the common case, CPU, is left out to keep reprs
    short)."""
    return "" if t.device.type == "cpu" else f", device={t.device}"


@dataclass(frozen=True)
class ClassSplit:
    """A whole split of a class-indexed dataset, held in memory as one tensor sorted by class.

    ``data[class_offsets[c]:class_offsets[c+1]]`` are the examples of class ``c``.
    ``data`` is ``[M, ...]``: uint8 images ``[M, C, H, W]`` (255 = full intensity; samplers turn
    them into float32 in [0, 1]; Omniglot is stored inverted, strokes high, as the MAML paper's 1 -
    x) or any float tensor (used as is).

    ``task_rotations`` (multiples of 90 degrees, e.g. ``(0, 90, 180, 270)``): every episode drawn
    from the split rotates each of its classes, counter-clockwise, by one of them, drawn per task
    and class (the MAML reference code's Omniglot augmentation); empty (the default): images as they
    are.
    """

    data: torch.Tensor
    class_offsets: torch.Tensor
    class_names: Sequence[str]
    name: str = ""
    meta: dict = field(default_factory=dict)
    task_rotations: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.data.dim() < 2:
            raise DataError("ClassSplit data must be [M, ...] with at least 2 dims, "
                            f"got shape {tuple(self.data.shape)}: "
                            "add a feature dimension, e.g. data[:, None]")
        if self.data.dtype != torch.uint8 and not self.data.is_floating_point():
            raise DataError(
                f"ClassSplit data must be uint8 or floating point, got {self.data.dtype}: convert "
                "it, "
                "e.g. data.float()")
        off = self.class_offsets
        if off.dim() != 1 or off.numel() != len(self.class_names) + 1:
            raise DataError(
                "ClassSplit class_offsets must have len(class_names) + 1 entries: give one name "
                "per class "
                "(episodes.from_arrays builds both from labels)")
        if int(off[0]) != 0 or int(off[-1]) != self.data.shape[0] or bool(
            (off[1:] < off[:-1]).any()):
            raise DataError(
                "ClassSplit class_offsets must start at 0, be non-decreasing and end at len(data): "
                "sort the data by class (episodes.from_arrays does it from labels)")
        rotations = tuple(self.task_rotations)
        if any(isinstance(r, bool) or not isinstance(r, int) or r % 90 for r in rotations):
            raise DataError(
                "ClassSplit task_rotations must be multiples of 90 degrees, got "
                f"{self.task_rotations!r}: "
                "pass e.g. (0, 90, 180, 270), or () for none")
        if rotations and self.data.dim() < 3:
            raise DataError(
                "ClassSplit task_rotations need images [M, ..., H, W]: pass () for other data")
        object.__setattr__(self, "task_rotations", rotations)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def counts(self) -> torch.Tensor:
        """Examples per class, int64 ``[num_classes]``."""
        return self.class_offsets[1:] - self.class_offsets[:-1]

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def __repr__(self) -> str:
        """``ClassSplit(name='omniglot/train', classes=4112, images=82240, shape=[1, 28, 28],
        dtype=uint8)``."""
        return (
            f"ClassSplit(name={self.name!r}, classes={self.num_classes}, "
            f"images={self.data.shape[0]}, "
            f"shape={list(self.example_shape)}, "
            f"dtype={_dtype_name(self.data)}{_device_note(self.data)})")

    def to(self, device: str | torch.device) -> "ClassSplit":
        """Move the split (e.g. to the GPU, so episodes are built there)."""
        return ClassSplit(self.data.to(device), self.class_offsets.to(device), self.class_names,
                          self.name, self.meta,
                          self.task_rotations)


@dataclass(frozen=True)
class Task:
    """One few-shot task: support ``[N*K, ...]`` and query ``[N*Q, ...]`` inputs and targets."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    def __repr__(self) -> str:
        """``Task(support=[5, 1, 28, 28], query=[75, 1, 28, 28])``."""
        return (f"Task(support={list(self.support_x.shape)}, query={list(self.query_x.shape)}"
                f"{_device_note(self.support_x)})")


@dataclass(frozen=True)
class TaskBatch:
    """A meta-batch of tasks, every tensor with a leading task dimension ``B``.

    Classification: ``support_x`` float ``[B, N*K, C, H, W]``, ``support_y`` int64 ``[B, N*K]`` in
    0..N-1. Regression: ``support_x`` ``[B, K, D_in]``, ``support_y`` float ``[B, K, D_out]``.
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    ways: int | None = None  # None for regression

    def __len__(self) -> int:
        return self.support_x.shape[0]

    def __repr__(self) -> str:
        """``TaskBatch(tasks=8, ways=5, support=[8, 5, 1, 28, 28], query=[8, 75, 1, 28, 28])``."""
        return (
            f"TaskBatch(tasks={len(self)}, ways={self.ways}, support={list(self.support_x.shape)}, "
            f"query={list(self.query_x.shape)}{_device_note(self.support_x)})")

    def task(self, i: int) -> Task:
        return Task(self.support_x[i], self.support_y[i], self.query_x[i], self.query_y[i])

    def to(self, device: str | torch.device, non_blocking: bool = False) -> "TaskBatch":
        mv = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return TaskBatch(mv(self.support_x), mv(self.support_y), mv(self.query_x), mv(self.query_y),
                         self.ways)

    @staticmethod
    def stack(tasks: Sequence[Task], ways: int | None = None) -> "TaskBatch":
        """Stack single tasks (all the same shapes) into a meta-batch."""
        if not tasks:
            raise DataError("cannot stack an empty list of tasks: pass at least one Task")
        return TaskBatch(
            torch.stack([t.support_x for t in tasks]),
            torch.stack([t.support_y for t in tasks]),
            torch.stack([t.query_x for t in tasks]),
            torch.stack([t.query_y for t in tasks]),
            ways,
        )

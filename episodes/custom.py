"""Your own data as episodes: arrays, an image-folder tree, or a task-generator function.

Usage::

    split = from_arrays(images_uint8, labels)                 # numpy or torch; any label values
    split = from_image_folder("my_data/", size=28, grayscale=True)   # one subfolder per class
    sampler = EpisodeSampler(split, ways=5, shots=1, queries=5, seed=0)

    tasks = TaskGenerator(make_task, seed=0)                  # make_task(generator) -> Task
    batch = tasks.sample(8)
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .errors import DataError
from .generator_state import restore_generator
from .preprocessing import Preprocessing, read_image_folder
from .sampler import check_positive
from .types import ClassSplit, Task, TaskBatch


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numpy array or torch tensor: {exc}") from exc
    if arr.dtype == object:
        raise DataError(
            f"{name} must be a numeric array (all examples the same shape), got dtype object: "
            "pass one numpy array of numbers, e.g. np.stack(examples)")
    # strings, bytes, dates, complex, structured: torch cannot hold them
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"{name} must be numeric (uint8 images or float features), got numpy dtype "
            f"{arr.dtype}: "
            f"convert it first, e.g. {name}.astype('float32')")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _check_finite(xt: torch.Tensor, name: str) -> None:
    """NaN/inf features would make every loss NaN much later, far from the cause: refuse them
    here."""
    if xt.is_floating_point():
        bad = ~torch.isfinite(xt)
        if bool(bad.any()):
            first = int(bad.reshape(len(xt), -1).any(dim=1).nonzero()[0])
            raise DataError(f"{name} has {int(bad.sum())} non-finite values (NaN or inf), "
                            f"the first in example {first}: "
                            "remove those examples or replace the values, e.g. "
                            f"np.nan_to_num({name})")


def from_arrays(x: Any, y: Any, class_names: Sequence[str] | None = None,
                name: str = "custom") -> ClassSplit:
    """A ``ClassSplit`` from examples ``x [M, ...]`` and labels ``y [M]`` (numpy or torch).

    Usage: ``split = from_arrays(images, labels)``

    ``x``: uint8 images ``[M, C, H, W]`` (0..255; the sampler divides by 255) or float features
    (used as is). ``y``: any label values (ints, strings, ...); classes are the sorted unique
    values, examples keep their order within a class. ``class_names``: one name per sorted unique
    label (default: ``str(label)``).
    """
    xt = _as_tensor(x, "x")
    if xt.dtype != torch.uint8 and not xt.is_floating_point():
        raise DataError(
            f"x has dtype {xt.dtype}: pass uint8 images (0..255) or float features, e.g. "
            "x.astype('uint8')"
        )
    if xt.dim() < 2:
        raise DataError(
            "x must be [M, ...] with at least 2 dims (one row per example), got shape "
            f"{tuple(xt.shape)}: "
            "add a feature dimension, e.g. x[:, None]")
    _check_finite(xt, "x")
    ya = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if ya.ndim != 1 or ya.shape[0] != xt.shape[0]:
        raise DataError(
            f"y must be 1-D with one label per example ({xt.shape[0]}), got shape "
            f"{tuple(ya.shape)}: "
            "pass one label per row of x")
    if ya.shape[0] == 0:
        raise DataError("x and y are empty: pass at least one example of each of 2 classes")
    if ya.dtype.kind in "fc" and not np.isfinite(ya).all():
        raise DataError(
            f"y has {int((~np.isfinite(ya)).sum())} NaN or inf labels: give every example a real "
            "label "
            "(or drop the unlabelled examples)")
    try:
        labels, inverse = np.unique(ya, return_inverse=True)
    except TypeError as exc:  # e.g. an object array mixing str and int
        raise DataError(f"y mixes label types that cannot be sorted ({exc}): "
                        "use one type, e.g. all str or all int") from exc
    inverse = inverse.reshape(-1)
    if len(labels) < 2:
        raise DataError(f"y has {len(labels)} distinct label ({labels.tolist()[0]!r}): "
                        "episodes need at least 2 classes; "
                        "add examples of another class")
    if class_names is None:
        names = [str(v) for v in labels.tolist()]
    else:
        names = [str(n) for n in class_names]
        if len(names) != len(labels):
            raise DataError(
                f"class_names has {len(names)} names but y has {len(labels)} distinct labels: give "
                "one name per label"
            )
    order = torch.from_numpy(np.argsort(inverse, kind="stable"))
    counts = torch.from_numpy(np.bincount(inverse, minlength=len(labels)).astype(np.int64))
    offsets = torch.zeros(len(labels) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    return ClassSplit(xt[order].contiguous(), offsets, names, name, {"source": "arrays"})


def from_image_folder(
    path: str | os.PathLike,
    size: int | tuple[int, int] | None = None,
    grayscale: bool = False,
    invert: bool | None = None,
    interpolation: str = "bilinear",
    transform: Preprocessing | None = None,
    name: str | None = None,
) -> ClassSplit:
    """A ``ClassSplit`` of uint8 images ``[M, C, H, W]`` from ``path/<class>/<image files>``
    (Pillow).

    Usage: ``split = from_image_folder("data/flowers", size=84)`` or, for a pretrained model's own
    preprocessing, ``from_image_folder("my_chars",
    transform=fewshot.pretrained.preprocessing(name))``.

    Classes are the sorted subfolder names; files (not starting with ``.``) in sorted order.
    ``size``: resize every image to ``size x size`` (or ``(height, width)``) with ``interpolation``
    (``"bilinear"``, ``"lanczos"`` as the stores, ...); without it every image must already have the
    same size. ``grayscale``: one channel, else RGB (3). ``invert``: ``None`` (default) turns a
    grayscale folder the stores' way round (strokes bright) from the images' borders
    (``episodes.polarity``: one logged line says what was detected and done); ``True`` forces
    ``255 - x`` (for dark strokes on a light background, like Omniglot's PNGs), ``False`` keeps the
    pixels (light strokes on a dark background, like MNIST). ``transform``: an
    ``episodes.Preprocessing`` used instead of size/grayscale/interpolation (why: a model's
    preprocessing is one value, so nothing can be half-matched); ``invert`` may still force its
    polarity.
    """
    if transform is None:
        transform = Preprocessing(size=size, channels=1 if grayscale else 3, invert=bool(invert),
                                  interpolation=interpolation)
    elif not isinstance(transform, Preprocessing):
        raise DataError(
            f"transform must be an episodes.Preprocessing, got {type(transform).__name__}: pass "
            "e.g. "
            "transform=fewshot.pretrained.preprocessing('omniglot-5w1s-maml')")
    elif (size, grayscale, interpolation) != (None, False, "bilinear"):
        raise DataError(
            "pass either transform= or size/grayscale/interpolation, not both: the transform "
            "already fixes them (use dataclasses.replace(transform, ...) to change one)")
    if invert is not None and not isinstance(invert, bool):
        raise DataError(
            f"invert must be None (detect), True or False, got {invert!r}: pass e.g. invert=None")
    return read_image_folder(path, transform, name=name, invert=invert)


class TaskGenerator:
    """A task source from your own function ``fn(generator: torch.Generator) -> Task``.

    Usage: ``TaskGenerator(lambda g: Task(...), seed=0).sample(16)``

    ``fn`` must draw all its randomness from the generator it is given (a seeded CPU
    ``torch.Generator``), so the tasks are reproducible and resumable via ``state_dict``.
    ``ways``: stored on the batches (default: the number of distinct integer support labels of the
    first task of each batch, ``None`` for float targets = regression).
    """

    def __init__(self, fn: Callable[[torch.Generator], Task], seed: int,
                 ways: int | None = None) -> None:
        if not callable(fn):
            raise DataError(
                f"TaskGenerator needs a callable fn(generator) -> Task, got {type(fn).__name__}: "
                "pass a function")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DataError(f"seed must be an integer, got {seed!r}: pass e.g. seed=0")
        self.fn, self.seed = fn, seed
        self.ways = None if ways is None else check_positive("ways", ways)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

    def sample(self, batch_size: int) -> TaskBatch:
        """Call ``fn`` ``batch_size`` times and stack the tasks into a ``TaskBatch``."""
        check_positive("batch_size", batch_size)
        tasks = []
        for _ in range(batch_size):
            task = self.fn(self.generator)
            if not isinstance(task, Task):
                raise DataError(
                    f"TaskGenerator fn returned {type(task).__name__}, not an episodes.Task: "
                    "return "
                    "episodes.Task(support_x, support_y, query_x, query_y)")
            tasks.append(task)
        ways = self.ways
        if ways is None and not tasks[0].support_y.is_floating_point():
            ways = int(torch.unique(tasks[0].support_y).numel())
        try:
            return TaskBatch.stack(tasks, ways)
        except RuntimeError as exc:
            raise DataError(
                "TaskGenerator fn returned tasks of different shapes: every task must have the "
                f"same shapes ({exc})"
            ) from exc

    def state_dict(self) -> dict:
        """Generator state (for bit-identical resume)."""
        return {"generator": self.generator.get_state(), "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`: the next tasks continue the saved run."""
        restore_generator(self.generator, state, "TaskGenerator")

"""The shape, type and range a learner's inputs must have, checked where they enter (``adapt``,
``predict``, ``adapted(x)``), in one line.

Why: a wrongly prepared image (64x64, RGB for a grayscale model, one image without its batch
dimension) otherwise fails deep inside the model with a raw ``torch.cat``/convolution RuntimeError
that names neither the expected shape nor the way to get it. The expected shape per example comes
from ``learner.preprocessing`` (an ``episodes.Preprocessing``: every pretrained model carries one,
``fewshot.pretrained.load``), else from the support set of the last ``adapt`` call (your own model:
``predict`` must see examples shaped like those the parameters were adapted on). Integer inputs
(``uint8`` pixels) are refused, since the models take floats; a model with a preprocessing also
refuses floats far outside its input range (``0..255`` pixels whose division by 255 was forgotten),
which would otherwise give confident garbage rather than an error.

Usage (what ``GradientLearner.adapt``/``predict`` do)::

    check_input(learner, support_x, "adapt")     # learns the shape when there is no preprocessing
    check_input(learner, x, "predict")
"""
from __future__ import annotations

from typing import Any

import torch

from episodes import Preprocessing
from episodes.preprocessing import check_size

from ..errors import FewshotError

# plain attribute on the learner: the per-example shape of the last adapt
_LEARNED = "_adapted_input_shape"


def expected_shape(learner: Any) -> tuple[tuple[int | None, ...], str] | None:
    """(per-example shape, where it comes from) or ``None`` when nothing is known yet.

    ``None`` entries are free (a preprocessing without ``size`` fixes only the channels).
    """
    prep = getattr(learner, "preprocessing", None)
    if isinstance(prep, Preprocessing):
        hw = check_size(prep.size)
        shape = (prep.channels, *(hw if hw is not None else (None, None)))
        return shape, (f"prepare images with learner.preprocessing ({prep!r}), e.g. "
                       "torch.stack([learner.preprocessing(path) for path in paths])")
    learned = learner.__dict__.get(_LEARNED)
    if learned is not None:
        return learned, "predict on examples shaped like the support set passed to adapt"
    return None


def _show(shape: tuple[int | None, ...]) -> str:
    return "[N, " + ", ".join("any" if s is None else str(s) for s in shape) + "]"


def check_input(learner: Any, x: Any, call: str) -> None:
    """One-line FewshotError when ``x`` is not floating point ``[N, *expected]`` (within the input
    range of a model with a preprocessing); ``adapt`` records the shape if none is known."""
    if not isinstance(x, torch.Tensor):
        raise FewshotError(
            f"{call} needs a torch.Tensor of examples [N, ...], got {type(x).__name__}: "
            "stack them first, e.g. torch.stack(images)")
    prep = getattr(learner, "preprocessing", None)
    prep = prep if isinstance(prep, Preprocessing) else None
    if not x.is_floating_point():
        how = (
            f"prepare raw images with learner.preprocessing ({prep!r}), or convert these with "
            "x.float() / "
            f"{prep.scale:g}" if prep is not None
               else "convert them, e.g. x.float() / 255 for uint8 pixels")
        raise FewshotError(
            f"{call} got {str(x.dtype).removeprefix('torch.')} inputs but the model takes floating "
            f"point ones: {how}")
    if prep is not None and x.numel():
        top = 255.0 / prep.scale
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        if high > 2 * top or low < -top:
            raise FewshotError(
                f"{call} got inputs in [{low:.4g}, {high:.4g}] but the model takes images in "
                f"[0, {top:g}]: prepare them with learner.preprocessing ({prep!r}), "
                "e.g. divide "
                f"0-255 pixels by {prep.scale:g}")
    known = expected_shape(learner)
    if known is None or (call == "adapt"
                         and not isinstance(getattr(learner, "preprocessing", None),
                                            Preprocessing)):
        if call == "adapt" and x.dim() >= 1:
            learner.__dict__[_LEARNED] = tuple(x.shape[1:])
        return
    shape, fix = known
    got = tuple(x.shape)
    fits = x.dim() == len(shape) + 1 and all(s is None or s == g for s, g in zip(shape, got[1:]))
    if fits:
        return
    if x.dim() == len(shape) and all(s is None or s == g for s, g in zip(shape, got)):
        fix = "one example needs its batch dimension: pass x[None]"
    raise FewshotError(
        f"{call} got inputs of shape {list(got)} but the model expects {_show(shape)} "
        f"(N examples): {fix}")

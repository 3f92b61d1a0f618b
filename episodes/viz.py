"""Render one classification episode as an image grid (Pillow), so you can see what the model sees.

Usage::

    batch, classes = EpisodeSampler(split, 5, 1, 2, seed=0).sample(1, return_classes=True)
    image = render_episode(batch.task(0), labels=[split.class_names[c] for c in classes[0]])
    image.save("episode.png")

Layout (:class:`GridLayout`): one row per label ``0..N-1``; each row is an optional text label
column, then the label's K support images, a separator gap with a vertical line, then its Q query
images. Tiles are the episode tensors (values in [0, 1] -> round(255 * v)), each pixel enlarged to
a ``scale x scale`` block, ``pad`` pixels apart, on a mid-grey background.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import DataError
from .types import Task, TaskBatch

BACKGROUND = 128
SEPARATOR = 255
# Largest picture rendered: 67 M pixels (~200 MB as RGB, a 8192x8192 image) is far more than any
# episode needs and far less than what runs a machine out of memory (`--scale 100000` asked for
# terabytes before this bound).
MAX_PIXELS = 1 << 26


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of an episode grid (see the module docstring)."""

    ways: int
    shots: int
    queries: int
    tile_h: int  # tile size in output pixels (image size * scale)
    tile_w: int
    pad: int
    gap: int
    label_w: int

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the whole image."""
        width = self.label_w + self.pad + (self.shots + self.queries) * (self.tile_w
                                                                         + self.pad) + self.gap
        height = self.pad + self.ways * (self.tile_h + self.pad)
        return width, height

    def tile_origin(self, row: int, col: int) -> tuple[int, int]:
        """``(x, y)`` of the top-left pixel of tile ``col`` (supports first, then queries) in
        ``row``."""
        x = self.label_w + self.pad + col * (self.tile_w + self.pad) + (self.gap if col
                                                                        >= self.shots else 0)
        y = self.pad + row * (self.tile_h + self.pad)
        return x, y


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.detach().to("cpu", torch.float32).clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def _check_size(layout: GridLayout, scale: int, h: int, w: int) -> None:
    """Refuse a picture over MAX_PIXELS before allocating it, naming the largest scale that fits."""
    width, height = layout.size
    if width * height <= MAX_PIXELS:
        return

    def fits(s: int) -> bool:
        gw, gh = GridLayout(layout.ways, layout.shots, layout.queries, h * s, w * s,
                            layout.pad, layout.gap, layout.label_w).size
        return gw * gh <= MAX_PIXELS

    lo, hi = 0, scale  # fits(lo) or lo == 0; not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    fix = (f"use scale {lo} or less (--scale {lo})" if lo >= 1
           else "show fewer ways, shots or queries (even scale 1 is too big)")
    raise DataError(
        f"the episode picture at scale {scale} would be {width}x{height} = {width * height:,} "
        "pixels, "
        f"over the limit of {MAX_PIXELS:,}: {fix}")


def render_episode(
    episode: Task | TaskBatch,
    labels: Sequence[str] | None = None,
    *,
    scale: int = 1,
    pad: int = 2,
    gap: int = 8,
):
    """Render one classification task (or task 0 of a ``TaskBatch``) as a ``PIL.Image``.

    Usage: ``render_episode(batch, labels=["a", "b"], scale=2).save("ep.png")``

    ``labels``: text for each row (label ``j``'s class name); rows are then prefixed "j: name".
    Images must be ``[C, H, W]`` with C = 1 (grey) or 3 (RGB).
    """
    task = episode.task(0) if isinstance(episode, TaskBatch) else episode
    sx, sy, qx, qy = task.support_x, task.support_y, task.query_x, task.query_y
    if sx.dim() != 4 or sx.shape[1] not in (1, 3):
        raise DataError(
            "render_episode needs images [N*K, C, H, W] with C in (1, 3), got support shape "
            f"{tuple(sx.shape)}")
    if sy.is_floating_point():
        raise DataError(
            "render_episode needs a classification episode (integer labels), got float targets")
    for name, v in (("scale", scale), ("pad", pad), ("gap", gap)):
        if not isinstance(v, int) or v < (1 if name == "scale" else 0):
            raise DataError(
                f"{name} must be an integer >= {1 if name == 'scale' else 0}, got {v!r}")
    ways = int(sy.max()) + 1 if sy.numel() else 0
    sy_c, qy_c = sy.cpu(), qy.cpu()
    shots = int((sy_c == 0).sum())
    queries = int((qy_c == 0).sum())
    for j in range(ways):
        if int((sy_c == j).sum()) != shots or int((qy_c == j).sum()) != queries:
            raise DataError(
                "render_episode needs a class-balanced episode (same shots and queries for every "
                "label)")
    if labels is not None and len(labels) != ways:
        raise DataError(
            f"labels has {len(labels)} entries for a {ways}-way episode: give one per label")
    channels, h, w = sx.shape[1:]
    font = ImageFont.load_default()
    texts = [f"{j}: {labels[j]}" if labels is not None else f"{j}" for j in range(ways)]
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    label_w = max(int(probe.textlength(t, font=font)) for t in texts) + 2 * pad if ways else 0
    layout = GridLayout(ways, shots, queries, h * scale, w * scale, pad, gap, label_w)
    _check_size(layout, scale, h, w)
    mode = "L" if channels == 1 else "RGB"
    fill = BACKGROUND if mode == "L" else (BACKGROUND,) * 3
    image = Image.new(mode, layout.size, fill)
    draw = ImageDraw.Draw(image)
    s8, q8 = _to_uint8(sx), _to_uint8(qx)

    def tile(x: torch.Tensor):
        t = x.repeat_interleave(scale, 1).repeat_interleave(scale, 2)  # [C, h*s, w*s]
        arr = t[0].numpy() if channels == 1 else t.permute(1, 2, 0).contiguous().numpy()
        return Image.fromarray(arr, mode)

    for j in range(ways):
        row_tiles = [s8[i] for i in torch.nonzero(sy_c == j).flatten().tolist()]
        row_tiles += [q8[i] for i in torch.nonzero(qy_c == j).flatten().tolist()]
        for col, t in enumerate(row_tiles):
            image.paste(tile(t), layout.tile_origin(j, col))
        _, y0 = layout.tile_origin(j, 0)
        draw.text((pad, y0 + max(0, (layout.tile_h - 10) // 2)), texts[j],
                  fill=SEPARATOR if mode == "L" else (255,) * 3, font=font)
    if pad + gap and queries:
        # in the free band
        x_sep = layout.label_w + shots * (layout.tile_w + layout.pad) + (pad + gap) // 2
        draw.line([(x_sep, 0), (x_sep, layout.size[1] - 1)],
                  fill=SEPARATOR if mode == "L" else (255,) * 3)
    return image

"""Metrics log of a run: one JSON object per line in ``metrics.jsonl`` (+ TensorBoard if installed).

Each line: ``{"kind": "train"|"val"|"test", "iteration": int, <metric>: float, ...}``.
A resumed run truncates lines past the resumed iteration so the file matches what was replayed.

Usage::

    log = MetricsLogger(run_dir, tensorboard=True)
    log.write("train", 10, loss=0.7, accuracy=0.5)
    rows = read_metrics(run_dir / "metrics.jsonl")
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from episodes.files import atomic_write_text

from ..errors import FewshotError
from .run_folder import METRICS_FILE


class MetricsLogger:
    """Append-only JSON-lines metrics file, flushed per line; optional TensorBoard mirror."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True,
                 resume_from: int | None = None) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        if resume_from is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path, strict=False) if r.get("iteration", 0)
                    <= resume_from]
            atomic_write_text(self.path,
                              "".join(json.dumps(r) + "\n" for r in kept), error=FewshotError)
        elif resume_from is None and self.path.exists():
            self.path.unlink()
        try:
            self._fh = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise FewshotError(
                f"cannot write {self.path}: {exc.strerror}; choose a writable --out") from exc
        self._tb = None
        if tensorboard:
            try:  # local: an optional dependency that takes seconds to import
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # noqa: BLE001 - tensorboard missing or broken: JSONL only
                pass
            else:
                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def write(self, kind: str, iteration: int, **metrics: Any) -> dict:
        """Write one line; floats are stored as is (NaN/inf as strings so the file stays valid
        JSON).

        An ``OSError`` (e.g. a full disk) propagates: the training loop turns it into its one-line
        error.
        """
        row: dict[str, Any] = {"kind": kind, "iteration": int(iteration)}
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
            if isinstance(value, float) and not math.isfinite(value):
                value = str(value)
            row[key] = value
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("kind", "iteration") and isinstance(value, float):
                    self._tb.add_scalar(f"{kind}/{key}", value, iteration)
        return row

    def close(self) -> None:
        try:
            self._fh.close()
        # e.g. a full disk: close() retries the failed flush; the error was already reported
        except OSError:
            pass
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path, *, strict: bool = True) -> list[dict]:
    """All rows of a metrics file; a torn last line (crash mid-write) is ignored."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise FewshotError(
            f"no metrics file at {path}: is this a run directory written by `fewshot "
            "train`?") from exc
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1 or not strict:
                continue
            raise FewshotError(
                f"{path} line {i + 1} is not JSON: the metrics file is damaged") from exc
    return rows

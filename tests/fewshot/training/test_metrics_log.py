"""Metrics JSONL logger."""
from __future__ import annotations

import json

from fewshot.training.metrics_log import MetricsLogger, read_metrics


def test_lines_and_resume_truncation(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for it in (10, 20, 30):
            log.write("train", it, loss=1.0 / it, accuracy=0.5)
        log.write("val", 20, accuracy=0.6, ci95=0.01)
        log.write("train", 40, loss=float("nan"))
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [10, 20, 30, 20, 40]
    assert rows[0] == {"kind": "train", "iteration": 10, "loss": 0.1, "accuracy": 0.5}
    assert rows[-1]["loss"] == "nan"
    # resume at 20: later lines dropped, earlier kept
    with MetricsLogger(tmp_path, tensorboard=False, resume_from=20) as log:
        log.write("train", 30, loss=0.5)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["kind"], r["iteration"]) for r in rows] == [("train", 10), ("train", 20),
                                                           ("val", 20), ("train", 30)]


def test_torn_last_line_ignored(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text(json.dumps({"kind": "train", "iteration": 1, "loss": 1.0}) + "\n{\"kind\": \"tr")
    assert read_metrics(p) == [{"kind": "train", "iteration": 1, "loss": 1.0}]

"""Learning curves of a run: meta-train loss/metric and validation metric with its 95% CI band
(matplotlib with the Agg backend: no display needed)."""
from __future__ import annotations

import io
from pathlib import Path

from episodes.files import atomic_write_bytes

from ..errors import FewshotError
from ..training.metrics_log import METRICS_FILE, read_metrics


def _series(rows: list[dict], kind: str, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        if r.get("kind") == kind and isinstance(r.get(key), (int, float)):
            xs.append(r["iteration"])
            ys.append(float(r[key]))
    return xs, ys


def plot_run(run_dir: str | Path, out: str | Path) -> Path:
    """Draw ``run_dir/metrics.jsonl`` into a PNG at ``out`` (written atomically)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FewshotError(f"run directory {run_dir} does not exist: pass the --out of a `fewshot train` run")
    rows = read_metrics(run_dir / METRICS_FILE)
    if not rows:
        raise FewshotError(f"{run_dir / METRICS_FILE} is empty: train for at least log_every iterations first")
    fig = draw_curves(rows)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    return atomic_write_bytes(out, buf.getvalue(), error=FewshotError)


def _pyplot():
    # local: matplotlib costs ~0.5 s to import and only the plot command needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_curves(rows: list[dict]):
    """The figure of :func:`plot_run` for metrics rows: (meta-train loss | train and validation metric with its
    95% CI band). Returns the matplotlib Figure (close it with ``plt.close``)."""
    plt = _pyplot()
    metric = "accuracy" if any("accuracy" in r for r in rows) else "mse"
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    xs, ys = _series(rows, "train", "loss")
    ax_loss.plot(xs, ys, label="meta-train loss", color="tab:blue")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("meta-training loss")
    ax_loss.legend()
    xs, ys = _series(rows, "train", metric)
    if xs:
        ax_metric.plot(xs, ys, label=f"meta-train {metric} (query, adapted)", color="tab:blue", alpha=0.6)
    vx, vy = _series(rows, "val", metric)
    _, vci = _series(rows, "val", "ci95")
    if vx:
        ax_metric.plot(vx, vy, "o-", label=f"validation {metric}", color="tab:orange")
        if len(vci) == len(vy):
            lo = [m - c for m, c in zip(vy, vci)]
            hi = [m + c for m, c in zip(vy, vci)]
            ax_metric.fill_between(vx, lo, hi, color="tab:orange", alpha=0.25, label="95% CI")
    ax_metric.set_xlabel("iteration")
    ax_metric.set_ylabel(metric)
    ax_metric.set_title(metric)
    ax_metric.legend()
    fig.tight_layout()
    return fig

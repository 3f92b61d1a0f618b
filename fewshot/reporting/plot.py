"""Learning curves of a run: meta-train loss/metric and validation metric with its 95% CI band
(matplotlib with the Agg backend: no display needed)."""
from __future__ import annotations

import io
from pathlib import Path

from episodes.files import atomic_write_bytes

from ..errors import FewshotError
from ..training.metrics_log import read_metrics
from ..training.run_folder import METRICS_FILE


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
        raise FewshotError(
            f"run directory {run_dir} does not exist: pass the --out of a `fewshot train` or "
            "`fewshot distill` run")
    rows = read_metrics(run_dir / METRICS_FILE)
    if not rows:
        raise FewshotError(
            f"{run_dir / METRICS_FILE} is empty: train for at least log_every iterations first")
    return _save_png(draw_curves(rows), out)


def _save_png(fig, out: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``out`` atomically (a killed write never leaves half a file) and
    close it."""
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
    """The figure of :func:`plot_run` for metrics rows: (meta-train loss | train and validation
    metric with its 95% CI band); for a ``fewshot distill`` run (its rows log ``step_sizes``) the
    loss is the distillation loss, the real data's after training on the distilled images.
    Returns the matplotlib Figure (close it with ``plt.close``)."""
    plt = _pyplot()
    metric = "accuracy" if any("accuracy" in r for r in rows) else "mse"
    distillation = any("step_sizes" in r for r in rows)
    loss_name = "distillation loss" if distillation else "meta-train loss"
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    xs, ys = _series(rows, "train", "loss")
    ax_loss.plot(xs, ys, label=loss_name, color="tab:blue")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("distillation loss (real batch)" if distillation
                      else "meta-training loss")
    ax_loss.legend()
    xs, ys = _series(rows, "train", metric)
    if xs:
        ax_metric.plot(xs, ys, label=f"meta-train {metric} (query, adapted)", color="tab:blue",
                       alpha=0.6)
    vx, vy = _series(rows, "val", metric)
    _, vci = _series(rows, "val", "ci95")
    if vx:
        what = ("validation accuracy (training images)" if distillation
                else f"validation {metric}")
        ax_metric.plot(vx, vy, "o-", label=what, color="tab:orange")
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


def paper_number(paper: str | None, metric: str) -> tuple[float, float | None] | None:
    """``(value, ci)`` of a paper result as the presets write it ("98.7 ± 0.4", "99.5", "MSE 0.90 ±
    0.16"), in the manifest's units (accuracy as a fraction); None when it is not one number (e.g. a
    list per step)."""
    import re

    text = (paper or "").strip()
    if metric != "accuracy":
        text = re.sub(r"^MSE\s+", "", text)
    m = re.match(r"^(\d+(?:\.\d+)?)(?:\s*±\s*(\d+(?:\.\d+)?))?(?!\s*/)(?:\s|$)", text)
    if m is None:
        return None
    scale = 0.01 if metric == "accuracy" else 1.0
    return float(m[1]) * scale, (float(m[2]) * scale if m[2] else None)


def draw_manifest_curves(manifests: list[dict]):
    """One axes: each manifest's validation learning curve (with its 95% CI band), the forecast of
    an unfinished run (dotted, ``fewshot.reporting.forecast``), its test result(s) at the published
    checkpoint, and the paper's final number as a dashed line. Accuracy in %. Returns the
    Figure."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    metric = manifests[0].get("metric", "accuracy")
    scale = 100.0 if metric == "accuracy" else 1.0
    for i, m in enumerate(manifests):
        color, name = f"C{i}", m.get("name", "?")
        curve = m.get("validation_curve")
        if not curve:
            raise FewshotError(
                f"the manifest of '{name}' records no validation curve (published before manifests "
                "held one): re-publish it, or plot its run folder with `fewshot "
                "plot RUN_DIR`")
        xs = [p["iteration"] for p in curve]
        ys = [scale * float(p[metric]) for p in curve]
        ax.plot(xs, ys, "o-", ms=3, color=color,
                label=f"{name}: validation ({m.get('val_episodes')} episodes)")
        if all(isinstance(p.get("ci95"), (int, float)) for p in curve):
            ci = [scale * float(p["ci95"]) for p in curve]
            ax.fill_between(xs, [y - c for y, c in zip(ys, ci)], [y + c for y, c in zip(ys, ci)],
                            color=color,
                            alpha=0.2)
        forecast = m.get("forecast")
        if forecast and isinstance(forecast.get(metric), (int, float)):
            # an unfinished run: a dotted line from its last validation to the forecast
            ax.plot([xs[-1], forecast["iteration"]], [ys[-1], scale * forecast[metric]], ":",
                    marker="o", markevery=[1], mfc="none", color=color,
                    label=f"{name}: forecast at iteration {forecast['iteration']:,} "
                          "(power-law fit, 95% prediction interval)")
            if isinstance(forecast.get("low"), (int, float)):
                ax.vlines(forecast["iteration"], scale * forecast["low"],
                          scale * forecast["high"], color=color, linestyles=":")
        at = m.get("checkpoint_iteration", xs[-1])
        results = [("test", m)] if not m.get("transductive") else \
            [("test, transductive BN", m["transductive"]),
             ("test, non-transductive", m.get("non_transductive"))]
        for (what, r), marker in zip(results, ("s", "D")):
            if r and isinstance(r.get("mean"), (int, float)):
                ax.errorbar([at], [scale * r["mean"]], yerr=[scale * float(r.get("ci95") or 0.0)],
                            fmt=marker,
                            color=color, capsize=4,
                            label=f"{name}: {what} ({m.get('episodes')} episodes)")
        paper = paper_number(m.get("paper"), metric)
        if paper is not None:
            ax.axhline(scale * paper[0], ls="--", color=color,
                       label=f"{name}: paper {m.get('paper')}")
            if paper[1]:
                ax.axhspan(scale * (paper[0] - paper[1]), scale * (paper[0] + paper[1]),
                           color=color, alpha=0.08)
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"{metric} (%)" if metric == "accuracy" else metric)
    ax.set_title("validation learning curve vs the paper's final number")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_manifests(manifests: list[dict], out: str | Path) -> Path:
    """Draw :func:`draw_manifest_curves` of ``manifests`` into a PNG at ``out`` (written
    atomically)."""
    metrics = {m.get("metric", "accuracy") for m in manifests}
    if len(metrics) > 1:
        raise FewshotError(
            f"the models report different metrics ({', '.join(sorted(metrics))}): plot them apart")
    return _save_png(draw_manifest_curves(manifests), out)

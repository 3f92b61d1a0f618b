"""`fewshot plot RUN_DIR --out curves.png`: the figure shows exactly what metrics.jsonl holds."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fewshot.cli import main
from fewshot.reporting.plot import draw_curves
from fewshot.training.metrics_log import read_metrics


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("plot") / "run"
    assert main(["train", "sinusoid-maml", "--out", str(run), "--iterations", "20", "--quiet",
                 "--set", "val_every=10", "--set", "val_episodes=10", "--set", "log_every=5"]) == 0
    return run


def test_plot_writes_the_png(run, tmp_path):
    assert main(["plot", str(run), "--out", str(tmp_path / "curves.png")]) == 0
    with Image.open(tmp_path / "curves.png") as im:
        assert im.format == "PNG" and im.size == (1100, 400)
        pixels = np.asarray(im.convert("RGB"))
    # something is drawn: the blue train curves and the orange validation curve are both there
    blue, orange = np.array([31, 119, 180]), np.array([255, 127, 14])
    assert (np.abs(pixels - blue).sum(-1) < 60).sum() > 100
    assert (np.abs(pixels - orange).sum(-1) < 60).sum() > 20


def test_curves_are_the_logged_numbers(run):
    import matplotlib.pyplot as plt

    rows = read_metrics(run / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val"]
    assert [r["iteration"] for r in train] == [5, 10, 15, 20] and [r["iteration"] for r in val] == [10, 20]
    fig = draw_curves(rows)
    try:
        ax_loss, ax_metric = fig.axes
        assert ax_loss.lines[0].get_xydata().tolist() == [[r["iteration"], r["loss"]] for r in train]
        assert ax_metric.get_ylabel() == "mse"
        train_metric, val_metric = ax_metric.lines
        assert train_metric.get_xydata().tolist() == [[r["iteration"], r["mse"]] for r in train]
        assert val_metric.get_xydata().tolist() == [[r["iteration"], r["mse"]] for r in val]
        band = ax_metric.collections[0].get_paths()[0].vertices  # the 95% CI band: mean ± ci95
        for r in val:
            ys = band[np.isclose(band[:, 0], r["iteration"]), 1]
            assert np.isclose(ys.min(), r["mse"] - r["ci95"]) and np.isclose(ys.max(), r["mse"] + r["ci95"])
    finally:
        plt.close(fig)


def test_plot_bad_run_dir(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1

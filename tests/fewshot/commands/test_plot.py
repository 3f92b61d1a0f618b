"""`fewshot plot RUN_DIR --out curves.png`: the figure shows exactly what metrics.jsonl holds."""
from __future__ import annotations

import json

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
    assert [r["iteration"] for r in train] == [5, 10, 15,
                                               20] and [r["iteration"] for r in val] == [10, 20]
    fig = draw_curves(rows)
    try:
        ax_loss, ax_metric = fig.axes
        assert ax_loss.lines[0].get_xydata().tolist() == [[r["iteration"], r["loss"]]
                                                          for r in train]
        assert ax_metric.get_ylabel() == "mse"
        train_metric, val_metric = ax_metric.lines
        assert train_metric.get_xydata().tolist() == [[r["iteration"], r["mse"]] for r in train]
        assert val_metric.get_xydata().tolist() == [[r["iteration"], r["mse"]] for r in val]
        band = ax_metric.collections[0].get_paths()[0].vertices  # the 95% CI band: mean ± ci95
        for r in val:
            ys = band[np.isclose(band[:, 0], r["iteration"]), 1]
            assert np.isclose(ys.min(), r["mse"] - r["ci95"]) and np.isclose(ys.max(),
                                                                             r["mse"] + r["ci95"])
    finally:
        plt.close(fig)


def test_a_distillation_runs_curves_are_named_as_such():
    import matplotlib.pyplot as plt

    rows = [{"kind": "train", "iteration": i, "loss": 2.0 / i, "lr": 0.01, "step_sizes": [0.02]}
            for i in (50, 100)] + [{"kind": "val", "iteration": 100, "accuracy": 0.8, "ci95": 0.0}]
    fig = draw_curves(rows)
    try:
        ax_loss, ax_metric = fig.axes
        assert ax_loss.get_title() == "distillation loss (real batch)"
        assert ax_loss.lines[0].get_xydata().tolist() == [[50, 0.04], [100, 0.02]]
        (val,) = ax_metric.lines
        assert val.get_label() == "validation accuracy (training images)"
        assert val.get_xydata().tolist() == [[100, 0.8]]
    finally:
        plt.close(fig)


def test_plot_bad_run_dir(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1


def _manifest(**kw):
    curve = [{"iteration": 500, "accuracy": 0.80, "ci95": 0.02, "episodes": 200},
             {"iteration": 1000, "accuracy": 0.90, "ci95": 0.01, "episodes": 200}]
    return {"name": "m", "metric": "accuracy", "validation_curve": curve, "val_episodes": 200,
            "episodes": 600,
            "checkpoint_iteration": 1000, "mean": 0.91, "ci95": 0.008, "paper": "98.7 ± 0.4",
            "transductive": None, **kw}


def test_paper_numbers_are_read_as_the_presets_write_them():
    from fewshot.reporting.plot import paper_number

    assert paper_number("98.7 ± 0.4", "accuracy") == pytest.approx((0.987, 0.004))
    assert paper_number("99.5", "accuracy") == pytest.approx((0.995, None))
    assert paper_number("MSE 0.90 ± 0.16 (5-shot; unconfirmed)",
                        "mse") == pytest.approx((0.90, 0.16))
    # not one number
    assert paper_number("MSE 0.67 / 0.38 / 0.35 after 1 / 5 / 10 steps", "mse") is None
    assert paper_number(None, "accuracy") is None


def test_manifest_curve_is_drawn_beside_the_paper_number():
    import matplotlib.pyplot as plt

    from fewshot.reporting.plot import draw_manifest_curves

    trans = {"mean": 0.95, "ci95": 0.005, "bn_mode": "transductive"}
    fig = draw_manifest_curves(
        [_manifest(transductive=trans, non_transductive={"mean": 0.91, "ci95": 0.008})])
    try:
        (ax,) = fig.axes
        curve, paper = ax.lines[0], [ln for ln in ax.lines if ln.get_linestyle() == "--"]
        assert np.allclose(curve.get_xydata(), [[500, 80.0], [1000, 90.0]])
        assert len(paper) == 1 and paper[0].get_ydata()[0] == pytest.approx(98.7)
        band = ax.collections[0].get_paths()[0].vertices  # the validation CI band, in %
        ys = band[np.isclose(band[:, 0], 500), 1]
        assert np.isclose(ys.min(), 78.0) and np.isclose(ys.max(), 82.0)
        points = [ln.get_xydata() for ln in ax.lines if ln.get_marker() in ("s", "D")]
        # both test results, at the weights
        assert np.allclose(np.concatenate(points), [[1000, 95.0], [1000, 91.0]])
        labels = ax.get_legend_handles_labels()[1]
        assert ("m: paper 98.7 ± 0.4" in labels
                and "m: test, transductive BN (600 episodes)" in labels)
        assert not [ln for ln in ax.lines if ln.get_linestyle() == ":"]  # a finished run
    finally:
        plt.close(fig)


def test_an_unfinished_runs_forecast_is_drawn_from_its_last_validation():
    import matplotlib.pyplot as plt

    from fewshot.reporting.plot import draw_manifest_curves

    forecast = {"iteration": 60000, "metric": "accuracy", "accuracy": 0.97, "low": 0.96,
                "high": 0.975}
    fig = draw_manifest_curves([_manifest(forecast=forecast, remaining_iterations=59000)])
    try:
        (dotted,) = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == ":"]
        assert np.allclose(dotted.get_xydata(), [[1000, 90.0], [60000, 97.0]])
        assert dotted.get_label() == ("m: forecast at iteration 60,000 (power-law fit, 95% "
                                      "prediction interval)")
        # the interval: a vertical segment at the forecast's iteration
        segments = [seg for c in fig.axes[0].collections if hasattr(c, "get_segments")
                    for seg in c.get_segments() if len(seg) and seg[0][0] == 60000]
        assert len(segments) == 1 and np.allclose(segments[0], [[60000, 96.0], [60000, 97.5]])
    finally:
        plt.close(fig)
    # a manifest whose forecast has no interval draws the forecast alone
    del forecast["low"], forecast["high"]
    fig = draw_manifest_curves([_manifest(forecast=forecast, remaining_iterations=59000)])
    try:
        assert len([ln for ln in fig.axes[0].lines if ln.get_linestyle() == ":"]) == 1
        assert not [seg for c in fig.axes[0].collections if hasattr(c, "get_segments")
                    for seg in c.get_segments() if len(seg) and seg[0][0] == 60000]
    finally:
        plt.close(fig)


def test_plot_pretrained_from_its_manifest(tmp_path, capsys, monkeypatch):
    import fewshot.pretrained as pt
    from tests.fewshot.commands.published import publish_tiny_sine

    run = publish_tiny_sine(tmp_path, monkeypatch, "tiny", iterations=10, val_every=5, episodes=20)
    assert main(["plot", "--pretrained", "tiny", "--out", str(tmp_path / "c.png")]) == 0
    with Image.open(tmp_path / "c.png") as im:
        assert im.format == "PNG" and im.size == (800, 450)
    # a manifest published before curves were recorded: one line saying so
    m = pt.show("tiny")
    del m["validation_curve"]
    (tmp_path / "models" / "tiny" / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert main(["plot", "--pretrained", "tiny", "--out", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err
    assert "records no validation curve" in err and err.count("\n") == 1
    assert main(["plot", str(run), "--pretrained", "tiny"]) == 2
    assert "give either RUN_DIR or --pretrained" in capsys.readouterr().err

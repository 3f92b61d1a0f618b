"""`fewshot plot RUN_DIR --out curves.png`."""
from __future__ import annotations

from fewshot.cli import main


def test_plot_writes_png(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "sinusoid-maml", "--out", str(run), "--iterations", "20", "--quiet",
                 "--set", "val_every=10", "--set", "val_episodes=10", "--set", "log_every=5"]) == 0
    assert main(["plot", str(run), "--out", str(tmp_path / "curves.png")]) == 0
    data = (tmp_path / "curves.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    from PIL import Image

    with Image.open(tmp_path / "curves.png") as im:
        assert im.size == (1100, 400)


def test_plot_bad_run_dir(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1

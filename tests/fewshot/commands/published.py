"""A tiny sinusoid model trained, published into a temp collection and put on the search path: what
the command tests that need a published model (show, eval, plot, table) start from."""
from __future__ import annotations

from pathlib import Path

import pytest

import fewshot.pretrained as pt
from fewshot.cli import main


def publish_tiny_sine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, *,
                      iterations: int,
                      val_every: int, episodes: int) -> Path:
    """Train ``sinusoid-maml`` for ``iterations``, publish it as ``name``; returns the run
    folder."""
    run = tmp_path / "run"
    assert main(
        ["train", "sinusoid-maml", "--out", str(run), "--iterations", str(iterations), "--quiet",
                 "--set", f"val_every={val_every}", "--set", "val_episodes=10"]) == 0
    assert main(["pretrained", "publish", str(run), name, "--dest", str(tmp_path / "models"),
                 "--episodes", str(episodes)]) == 0
    monkeypatch.setattr(pt.registry, "_REGISTERED", [])
    monkeypatch.setenv("FEWSHOT_PRETRAINED_PATH", str(tmp_path / "models"))
    return run

"""The console script's own behaviour: our warnings print as one ``warning: ...`` line."""
from __future__ import annotations

import warnings

import fewshot.pretrained as pt
from fewshot.cli import main


def test_manifest_warning_is_one_line(tmp_path, capsys, monkeypatch):
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_bytes(b"\xff\xfe")  # not UTF-8
    monkeypatch.setattr(pt, "_REGISTERED", [])
    monkeypatch.setattr(pt, "_WARNED", set())
    pt.register_dir(tmp_path / "models")
    show = warnings.showwarning
    assert main(["pretrained", "list"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"warning: skipping the pretrained model in {broken}: ") and err.count("\n") == 1, err
    assert warnings.showwarning is show  # restored: main is also called in-process

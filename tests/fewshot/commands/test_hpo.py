"""`fewshot hpo`: the comparison printed as a markdown table and written as JSON."""
import json

from fewshot.cli import main


def test_hpo_command_prints_and_writes_the_table(mnist_root, tmp_path, capsys):
    out = tmp_path / "hpo.json"
    args = ["hpo", "--seeds", "1", "--methods", "random", "grid", "--root", str(mnist_root),
            "--set", "budget=50", "--set", "run_steps=25", "--set", "train_size=100",
            "--set", "val_size=100", "--set", "hidden=8", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| method | inner steps |") and "| grid | 50 |" in printed
    assert json.loads(out.read_text())["table"] == printed.strip()
    assert main(["hpo", "--seeds", "0"]) == 2

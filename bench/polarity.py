"""What reading images the wrong way round costs, and what the polarity check gives back (issue 23,
point 4).

MNIST test digits (light strokes on black) as a folder of PNGs, one subfolder per digit, scored by
``fewshot eval omniglot-5w1s-maml --data DIGITS --ways 5 --shots 1 --queries 5 --episodes 50`` three
ways: ``--invert`` forced (what the model's Omniglot recipe did before the check: its PNGs are dark
on white), ``auto`` (the border check: detected light-on-dark, kept) and ``--no-invert`` forced
(must equal auto). Usage: ``FEWSHOT_DATA=DIR_WITH_MNIST python bench/polarity.py [--per-class 40]``
(writes bench/results/polarity.json and prints one line per setting).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from episodes import data_root, read_idx
from episodes.files import atomic_write_text
from fewshot.cli import main as fewshot_main


def digits_folder(mnist: Path, root: Path, per_class: int) -> None:
    """``root/<digit>/<i>.png``: the first ``per_class`` test images of each digit, as MNIST stores
    them."""
    images = read_idx(mnist / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz")
    for digit in range(10):
        (root / str(digit)).mkdir(parents=True)
        for i, row in enumerate(np.flatnonzero(labels == digit)[:per_class]):
            Image.fromarray(images[row], "L").save(root / str(digit) / f"{i:03d}.png")


def score(folder: Path, extra: list[str]) -> tuple[dict, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["eval", "omniglot-5w1s-maml", "--data", str(folder), "--ways", "5", "--shots", "1",
            "--queries", "5",
            "--episodes", "50", "--json", "--quiet", *extra]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert fewshot_main(argv) == 0, err.getvalue()
    line = next(ln for ln in err.getvalue().splitlines() if "polarity" in ln)
    return json.loads(out.getvalue().strip().splitlines()[-1]), line


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "polarity.json"))
    args = ap.parse_args()
    # $FEWSHOT_DATA, else ~/.cache/fewshot: <data>/mnist holds the raw idx files
    data = data_root(None)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "digits"
        digits_folder(data / "mnist", folder, args.per_class)
        for name, extra in (("forced --invert (before: the model's recipe)", ["--invert"]),
                            ("auto (polarity check)", []), ("forced --no-invert", ["--no-invert"])):
            report, line = score(folder, extra)
            results[name] = {"mean": report["mean"], "ci95": report["ci95"],
                             "polarity": report["polarity"],
                             "line": line.split(": ", 1)[1]}
            print(
                f"{name}: {100 * report['mean']:.2f} ± {100 * report['ci95']:.2f}%  "
                f"[{results[name]['line']}]")
    record = {
        "command": "fewshot eval omniglot-5w1s-maml --data DIGITS --ways 5 --shots 1 --queries 5 "
                   "--episodes 50",
        "digits": f"MNIST test set, first {args.per_class} of each digit, 28x28 PNGs",
        "results": results}
    atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())

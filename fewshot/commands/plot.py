"""``fewshot plot RUN_DIR --out curves.png``: learning curves of a training run.

Usage: ``fewshot plot runs/sine --out curves.png``
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..reporting.plot import plot_run


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plot", help="plot the learning curves of a run (PNG)",
                              description="Meta-train loss/metric and validation metric with its 95% CI band.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `fewshot train`")
    p.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/curves.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out or str(Path(args.run_dir) / "curves.png")
    path = plot_run(args.run_dir, out)
    print(f"wrote {path}")
    return 0

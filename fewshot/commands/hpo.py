"""``fewshot hpo``: hyperparameters of one training run learned by gradient, against random and grid
search at the same training compute.

Usage::

    fewshot hpo --dataset mnist --seeds 5 --out bench/results/hpo-mnist.json
    fewshot hpo --methods implicit-decay random --set budget=500      # a quick look

Prints the comparison as a markdown table (validation and test loss and accuracy, mean ± 95% CI
over the seeds) and writes it, with every seed's result, as JSON to ``--out``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from episodes.files import atomic_write_text, hardware

from ..config.typed import apply_overrides, dotted_types
from ..errors import FewshotError
from ..training.hpo import METHODS, HPOConfig, compare, markdown_table


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``hpo``. Usage: ``register(parser.add_subparsers())``."""
    p = subparsers.add_parser("hpo",
                              help="hyperparameters learned by gradient vs random/grid search",
                              description="Single-task hyperparameter optimisation on an MNIST or "
                                          "Fashion-MNIST MLP: a weight decay per weight (implicit "
                                          "differentiation), a learning-rate schedule (unrolled), "
                                          "random and grid search, at equal inner steps.")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    p.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override the setting (keys: {', '.join(dotted_types(HPOConfig))})")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="data root (else $FEWSHOT_DATA, else ~/.cache/fewshot)")
    p.add_argument("--out", default=None, metavar="FILE.json", help="write the results here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    extra = [f"dataset={args.dataset}"] + ([f"data_root={args.root}"] if args.root else [])
    cfg = apply_overrides(HPOConfig(), [*extra, *args.overrides])
    if args.seeds < 1:
        raise FewshotError(f"--seeds must be a positive integer, got {args.seeds}")
    rows = compare(cfg, args.seeds, tuple(args.methods))
    table = markdown_table(rows)
    print(table)
    if args.out:
        payload = {"config": {**cfg.__dict__, "data_root": None}, "seeds": args.seeds,
                   "hardware": hardware(), "table": table, "rows": rows}
        atomic_write_text(Path(args.out), json.dumps(payload, indent=1) + "\n", error=FewshotError)
    return 0

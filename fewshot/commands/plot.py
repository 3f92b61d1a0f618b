"""``fewshot plot RUN_DIR --out curves.png``: learning curves of a training run; ``fewshot plot
--pretrained NAME``: a published model's validation curve (from its manifest) beside the paper's
final number.

Usage::

    fewshot plot runs/sine --out curves.png
    fewshot plot --pretrained omniglot-5w1s-maml --pretrained omniglot-20w1s-maml \
        --out docs/omniglot-curves.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import pretrained
from ..errors import ConfigError
from ..reporting.plot import plot_manifests, plot_run


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plot",
                              help="plot the learning curves of a run or of published models (PNG)",
                              description="Meta-train loss/metric and validation metric with its "
                                          "95% CI band; with "
                                          "--pretrained, the validation curves recorded in the "
                                          "models' manifests, "
                                          "their test results and the papers' numbers.")
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="?",
                   help="a run directory written by `fewshot train`")
    p.add_argument("--pretrained", action="append", default=[], metavar="NAME",
                   help="a published model (repeatable: several curves in one figure) instead of "
                        "RUN_DIR")
    p.add_argument("--out", default=None,
                   help="PNG path (default: RUN_DIR/curves.png, or NAME-curves.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.run_dir) == bool(args.pretrained):
        raise ConfigError(
            "give either RUN_DIR or --pretrained NAME: e.g. `fewshot plot runs/sine` or "
            "`fewshot plot --pretrained omniglot-5w1s-maml`")
    if args.pretrained:
        out = args.out or f"{args.pretrained[0]}-curves.png"
        path = plot_manifests([pretrained.show(name) for name in args.pretrained], out)
    else:
        out = args.out or str(Path(args.run_dir) / "curves.png")
        path = plot_run(args.run_dir, out)
    print(f"wrote {path}")
    return 0

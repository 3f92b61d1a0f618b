"""``fewshot prepare DATASET``: download or read a dataset and build its HDF5 store once.

Usage: ``fewshot prepare omniglot --source DIR_WITH_THE_ARCHIVES --root /tmp/fewshot``
(mini-ImageNet: ``fewshot prepare mini-imagenet --source PATH [--splits DIR] [--workers N]``, format
auto-detected)
"""
from __future__ import annotations

import argparse
import sys
import time

from episodes.errors import DataError
from episodes.mini_imagenet import FORMATS, detect_format
from episodes.paths import store_path
from episodes.registry import DATASETS, dataset_info, prepare


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` subcommand. Usage: ``register(parser.add_subparsers())``."""
    p = subparsers.add_parser(
        "prepare",
        help="download/verify a dataset and build its HDF5 store",
        description="Build a dataset's HDF5 store under the data root (--root, else $FEWSHOT_DATA, "
                    "else "
                    "~/.cache/fewshot).",
    )
    p.add_argument("dataset", metavar="DATASET", help=f"dataset to prepare: {', '.join(DATASETS)}")
    p.add_argument("--source", default=None, metavar="DIR_OR_URL",
                   help="local folder (content verified) or base URL (md5 verified); default: the "
                        "official download. "
                        f"mini-imagenet: a folder (or a file in it) in one of {len(FORMATS)} "
                        "layouts, detected: "
                        f"{', '.join(FORMATS)}")
    p.add_argument("--root", default=None, metavar="DIR", help="data root to write the store into")
    p.add_argument("--size", type=int, default=None, metavar="N",
                   help="image side in pixels (default 28; 84 for "
                        "mini-imagenet)")
    p.add_argument("--splits", default=None, metavar="DIR",
                   help="mini-imagenet: folder holding the Ravi train/val/test.csv, if not in "
                        "--source "
                        "(ILSVRC builder)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="mini-imagenet: image-decoding processes (default min(8, CPU count))")
    p.add_argument("--force", action="store_true", help="rebuild the store even if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars, print only the result")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the store (a no-op if it exists, unless ``--force``) and print where it is and how long
    it took."""
    info = dataset_info(args.dataset)  # unknown name -> one-line DataError listing the valid ones
    size = info.default_size if args.size is None else args.size
    path = store_path(args.dataset, args.root, size)
    if path.exists() and not args.force:
        print(f"{args.dataset}: store already exists at {path} (use --force to rebuild)")
        return 0
    extra = {k: v for k, v in (("splits", args.splits), ("workers", args.workers)) if v is not None}
    detected = ""
    if args.dataset == "mini-imagenet":
        if args.source is not None:
            fmt, folder = detect_format(args.source)
            detected = f" from {fmt} source {folder}"
            if not args.quiet:
                print(f"{args.dataset}: detected {fmt} ({FORMATS[fmt]}) in {folder}")
                sys.stdout.flush()
    elif extra:
        verb = "applies" if len(extra) == 1 else "apply"
        raise DataError(f"--{' and --'.join(extra)} only {verb} to mini-imagenet: drop "
                        f"{'it' if len(extra) == 1 else 'them'} for {args.dataset}")
    start = time.perf_counter()
    out = prepare(args.dataset, args.source, args.root, size=size, force=args.force,
                  quiet=args.quiet, **extra)
    print(f"{args.dataset}: wrote {out}{detected} in {time.perf_counter() - start:.1f} s")
    sys.stdout.flush()
    return 0

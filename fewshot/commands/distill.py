"""``fewshot distill PRESET``: learn a handful of synthetic training images by dataset distillation.

Usage::

    fewshot distill mnist-distill-10 --out runs/mnist-distill-10
    fewshot distill mnist-distill-100-random --set iterations=5000     # a shorter run
    fewshot distill --list-presets

The run resumes when ``--out`` holds one (Ctrl-C, then the same command); at the end it prints and
writes (``result.json``) the test accuracy of networks trained on the distilled images alone.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import signal
import sys
from pathlib import Path

from ..config.distill import DISTILL_PRESETS, DistillConfig, get_distill_preset
from ..config.typed import apply_overrides, dotted_types
from ..errors import ConfigError
from ..training.distill import distill
from ..training.interrupt import TrainingInterrupted


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``distill``. Usage: ``register(parser.add_subparsers())``."""
    p = subparsers.add_parser("distill", help="distill a training set into a few synthetic images",
                              description="Dataset distillation (Wang et al. 2018): synthetic "
                                          "images and step sizes learned so that a network trained "
                                          "on them alone does well on the real data.")
    p.add_argument("preset", nargs="?", metavar="PRESET",
                   help=f"one of {', '.join(DISTILL_PRESETS)}")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run folder (default runs/PRESET); a run there is resumed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override the preset (keys: {', '.join(dotted_types(DistillConfig))})")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="data root (else $FEWSHOT_DATA, else ~/.cache/fewshot)")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        for name, cfg in DISTILL_PRESETS.items():
            labels = "soft labels" if cfg.soft_labels else "hard labels"
            print(f"{name}: {cfg.images} images, {cfg.init} init, {labels}, "
                  f"{cfg.iterations} iterations")
        return 0
    if args.preset is None:
        raise ConfigError("name a preset (fewshot distill mnist-distill-10), or --list-presets")
    cfg = apply_overrides(get_distill_preset(args.preset), args.overrides)
    if args.root is not None:
        cfg = dataclasses.replace(cfg, data_root=args.root)
    out = Path(args.out) if args.out else Path("runs") / args.preset
    try:
        result = distill(cfg, out, quiet=args.quiet)
    except TrainingInterrupted as stop:
        # the same settings resume it: every --set again (another value is refused), and the root
        again = [args.preset, "--out", str(out)] + [a for o in args.overrides for a in ("--set", o)]
        again += ["--root", args.root] if args.root is not None else []
        print(f"interrupted by {signal.Signals(stop.signum).name} at iteration {stop.iteration}: "
              f"saved {stop.checkpoint}; resume with: fewshot distill {shlex.join(again)}",
              file=sys.stderr, flush=True)
        return stop.exit_status
    if result.test_mean is not None:
        spread = f" ± {100 * (result.test_ci95 or 0.0):.2f}" if result.test_inits > 1 else ""
        inits = (f"{result.test_inits} fresh initialisations" if result.test_inits > 1
                 else "its initialisation")
        print(f"{args.preset}: test accuracy {100 * result.test_mean:.2f}{spread}% "
              f"({inits}, trained on {cfg.images} distilled images) -> {out}")
    return 0

"""``fewshot l2o``: meta-train learned optimizers and run the learned-optimizer experiments.

    fewshot l2o train quadratic --out runs/l2o-quadratic --set epochs=10 --set net.output_scale=0.05
    # PNG + JSON, and the final-loss table on stdout
    fewshot l2o experiment mnist-relu --out figures/
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from episodes.files import atomic_write_text, hardware

from ..config.typed import apply_overrides, dotted_types
from ..errors import FewshotError
from ..l2o.metatrain import MetaTrainConfig, meta_train
from ..pretrained.learned_optimizers import save_learned_optimizer
from ..reporting.l2o_experiments import (
    EXPERIMENTS,
    PROBLEMS,
    build_family,
    final_table,
    run_experiment,
    training_preset,
    write_outputs,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``l2o train|experiment|list``. Usage: ``register(parser.add_subparsers())``."""
    p = subparsers.add_parser("l2o",
                              help="learned optimizers: meta-train, compare with tuned baselines",
                              description="Learning to learn by gradient descent by gradient "
                                          "descent.")
    sub = p.add_subparsers(dest="l2o_command", metavar="ACTION")
    sub.required = True

    t = sub.add_parser("train", help="meta-train a learned optimizer on a problem family")
    t.add_argument("problem", metavar="PROBLEM",
                   help="quadratic, mnist, ... (see `fewshot l2o list`)")
    t.add_argument("--out", required=True, metavar="DIR",
                   help="folder for model.safetensors, manifest.json, history.jsonl")
    t.add_argument("--name", default=None, help="name in the manifest (default: l2o-PROBLEM)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the problem's meta-training preset, e.g. --set epochs=5 --set "
                        "net.p=5 "
                        f"(keys: {', '.join(dotted_types(MetaTrainConfig))}; repeatable)")
    t.add_argument("--seed", type=int, default=None,
                   help="meta-training seed (same as --set seed=S; default 0)")
    t.add_argument("--epochs", type=int, default=None,
                   help="meta-training epochs (same as --set epochs=N; default: "
                        "the problem's preset)")
    t.add_argument("--root", default=None, metavar="DIR",
                   help="data root (else $FEWSHOT_DATA, else ~/.cache/fewshot)")
    t.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    t.set_defaults(func=run_train)

    e = sub.add_parser("experiment", help="learned vs tuned SGD/RMSprop/Adam/NAG: PNG + JSON")
    e.add_argument("experiment", metavar="EXPERIMENT", nargs="+",
                   help="experiment name(s), or 'all'")
    e.add_argument("--optimizer", default=None, metavar="NAME_OR_DIR",
                   help="learned optimizer (default: the experiment's pretrained one)")
    e.add_argument("--out", default="l2o-figures", metavar="DIR",
                   help="folder for the PNG and JSON files")
    e.add_argument("--test-problems", type=int, default=100)
    e.add_argument("--tune-problems", type=int, default=20,
                   help="problems used to pick each baseline's learning rate")
    e.add_argument("--steps", type=int, default=None, help="horizon (default: the experiment's)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--root", default=None, metavar="DIR",
                   help="data root (else $FEWSHOT_DATA, else ~/.cache/fewshot)")
    e.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    e.set_defaults(func=run_experiments)

    ls = sub.add_parser("list", help="problems and experiments")
    ls.set_defaults(func=run_list)


def run_train(args: argparse.Namespace) -> int:
    """Meta-train, then write the best weights and the manifest under ``--out``."""
    flags = [f"{key}={getattr(args, key)}" for key in ("seed", "epochs")
             if getattr(args, key) is not None]
    config = apply_overrides(training_preset(args.problem), [*args.overrides, *flags])
    train = build_family(args.problem, "train", args.root)
    out = Path(args.out)
    lines: list[str] = []

    def report(record) -> None:
        lines.append(json.dumps(dataclasses.asdict(record)))
        atomic_write_text(out / "history.jsonl", "\n".join(lines) + "\n", error=FewshotError)
        tqdm.write(f"epoch {record.epoch:3d}  train meta-loss/step {record.train_meta_loss:.4g}  "
                   f"val final loss {record.val_final_loss:.4g}  ({record.seconds:.1f} s)",
                   file=sys.stdout)
        sys.stdout.flush()

    start = time.perf_counter()
    result = meta_train(train, train, config, callback=report, progress=not args.quiet)
    name = args.name or f"l2o-{args.problem}"
    manifest = save_learned_optimizer(result.net, out, name=name, extra={
        "problem": args.problem,
        "best_epoch": result.best_epoch,
        "best_val_final_loss": result.best_val,
        "epochs_run": result.history[-1].epoch,
        "preset_epochs": training_preset(args.problem).epochs,
        "meta_train": {k: v for k, v in dataclasses.asdict(config).items() if k != "net"},
        "seconds": round(time.perf_counter() - start, 1),
        "hardware": hardware(),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    print(
        f"wrote {out} ({manifest['name']}: best epoch {result.best_epoch}, val final loss "
        f"{result.best_val:.4g})")
    return 0


def run_experiments(args: argparse.Namespace) -> int:
    """Run each named experiment, write its PNG/JSON, print the final-loss table."""
    names = list(EXPERIMENTS) if args.experiment == ["all"] else args.experiment
    results = []
    for name in names:
        result = run_experiment(name, optimizer=args.optimizer, test_problems=args.test_problems,
                                tune_problems=args.tune_problems, steps=args.steps, seed=args.seed,
                                root=args.root,
                                progress=not args.quiet)
        png, js = write_outputs(result, args.out)
        print(f"{name}: wrote {png} and {js} ({result['seconds']} s)", flush=True)
        results.append(result)
    print(final_table(results))
    sys.stdout.flush()
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print the problems and experiments."""
    print("problems (fewshot l2o train PROBLEM):")
    for name, spec in PROBLEMS.items():
        print(f"  {name:16s} {spec.description}")
    print("experiments (fewshot l2o experiment NAME):")
    for name, exp in EXPERIMENTS.items():
        print(f"  {name:16s} {exp.steps} steps, optimizer {exp.optimizer}: {exp.question}")
    return 0

"""``fewshot pretrained list|show NAME|verify NAME|publish RUN_DIR NAME|table``.

Usage::

    fewshot pretrained list
    fewshot pretrained show omniglot-5w1s-maml
    fewshot pretrained publish runs/sine sinusoid-maml --dest pretrained --episodes 600
    # markdown results table from the manifests (--full: docs/results.md's)
    fewshot pretrained table
    fewshot pretrained calibrate omniglot-5w1s-maml --out runs/5w1s-nt --tasks 400 \
        --set learner.inner_lr=0.1
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import pretrained
from ..config import apply_overrides
from ..config.manifest import DISTILLED_DATA, LEARNED_OPTIMIZER, META_INITIALIZATION
from ..pretrained.training_state import read_training_state
from ..reporting import publish, results_table
from ..training.calibrate import calibrated_run
from ..training.distill import RESULT_FILE


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pretrained", help="list, show, verify or publish pretrained models")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    sub.add_parser("list", help="names of the available models")
    s = sub.add_parser("show", help="print a model's manifest")
    s.add_argument("name")
    v = sub.add_parser("verify",
                       help="check a model's weights (and training state) against their sha256")
    v.add_argument("name")
    pub = sub.add_parser("publish",
                         help="evaluate a run's best weights and store them as a pretrained model")
    pub.add_argument("run_dir")
    pub.add_argument("name")
    pub.add_argument("--dest", required=True, metavar="DIR",
                     help="collection directory to write DIR/NAME/ into (e.g. pretrained/ in a "
                          "checkout)")
    pub.add_argument("--episodes", type=int, default=600)
    pub.add_argument("--notes", default="",
                     help="what differs from the preset besides the iteration count")
    pub.add_argument("--budget", default="",
                     help='the compute the training got, e.g. "25 CPU-minutes, 1 thread"')
    tab = sub.add_parser("table", help="markdown results table (ours vs the papers'): the README's")
    tab.add_argument("--full", action="store_true",
                     help="add episodes, iterations, changes vs preset, training budget and "
                          "hardware "
                          "(docs/results.md's table)")
    cal = sub.add_parser("calibrate",
                         help="start a run from a model trained with transductive batch norm, with "
                              "per-step statistics calibrated on training tasks "
                              "(docs/batchnorm.md)")
    cal.add_argument("name")
    cal.add_argument("--out", required=True,
                     help="new run directory (publish it, or fine-tune it with fewshot train)")
    cal.add_argument("--tasks", type=int, default=400,
                     help="training tasks whose batch statistics are averaged")
    cal.add_argument("--queries", type=int, default=5,
                     help="query examples per class in the calibration tasks")
    cal.add_argument("--seed", type=int, default=12345, help="seed of the calibration tasks")
    cal.add_argument("--bn-mode", default="frozen", choices=("frozen", "running", "support"),
                     help="the new run's bn_mode (support: statistics from each task's support "
                          "set, nothing to "
                          "calibrate; the run starts from the model's weights)")
    cal.add_argument("--root", default=None, help="data root (default: $FEWSHOT_DATA)")
    cal.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="config change for the new run (e.g. learner.inner_lr=0.1, "
                          "optim.lr=0.0003)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in pretrained.list():
            m = pretrained.manifest(name)
            if m.kind == DISTILLED_DATA:
                print(f"{name}\tdistilled-data\t{m.get('images')} {m.get('dataset')} images, test "
                      f"accuracy {100 * m['mean']:.2f}")
                continue
            if m.kind == LEARNED_OPTIMIZER:
                print(
                    f"{name}\tlearned-optimizer\ttrained on {m.get('problem')}, validation final "
                    "loss "
                    f"{m.get('best_val_final_loss', float('nan')):.3g}")
                continue
            scale = 100.0 if m.get("metric") == "accuracy" else 1.0
            print(
                f"{name}\t{m.get('learner')}\t{m.get('metric')} {scale * m['mean']:.2f} ± "
                f"{scale * m['ci95']:.2f}"
                f"\t({m.get('episodes')} {m.get('split')} episodes)")
    elif args.action == "show":
        print(json.dumps(pretrained.show(args.name), indent=2))
    elif args.action == "verify":
        m = pretrained.verify(args.name)
        print(f"{args.name}: sha256 {m['sha256']} OK")
        if m.kind == META_INITIALIZATION:
            if m.training_state:  # checksums, and that it is the state of these weights
                last, best, _ = read_training_state(pretrained.locate(args.name), m, args.name)
                print(
                    f"{args.name}: training state OK (stopped at iteration {last['iteration']}, "
                    "weights from "
                    f"iteration {best['iteration']}): `fewshot train --from-pretrained "
                    f"{args.name}` continues it")
            else:
                why = m.training_state_note or "published before models carried it"
                print(f"{args.name}: ships no training state ({why})")
    elif args.action == "publish" and is_distillation_run(args.run_dir):
        m = pretrained.publish_distilled(args.run_dir, args.name, dest=args.dest)
        spread = f" ± {100 * m['ci95']:.2f}" if m.get("eval_inits", 1) > 1 else ""
        print(f"published {args.name}: test accuracy {100 * m['mean']:.2f}{spread}% "
              f"({m.get('eval_inits')} network(s) trained on {m.get('images')} distilled images)")
    elif args.action == "publish":
        out = publish(args.run_dir, args.name, dest=args.dest, episodes=args.episodes,
                      notes=args.notes,
                      budget=args.budget)
        print(f"published {args.name}: {out['metric']} {out['mean']:.4f} ± {out['ci95']:.4f} over "
              f"{out['episodes']} episodes")
    elif args.action == "calibrate":
        source, cfg, manifest = pretrained.load_with_config(args.name)
        extra = [*(["learner.per_step_bn=true"] if args.bn_mode != "support" else []),
                 f"learner.bn_mode={args.bn_mode}", *args.overrides]
        if args.root is not None:
            extra.append(f"data.root={args.root}")
        cfg = apply_overrides(cfg, extra)
        iteration = int(manifest.get("trained_iterations") or cfg.iterations)
        cfg = apply_overrides(cfg, [f"iterations={iteration}"])
        score = calibrated_run(source, cfg, Path(args.out), iteration=iteration, tasks=args.tasks,
                               seed=args.seed,
                               queries=args.queries)
        how = ("support-set statistics" if args.bn_mode == "support"
               else f"calibrated on {args.tasks} training tasks")
        print(f"{args.name}, {how}: validation {score:.4f}; run: {args.out} "
              f"(iteration {iteration})")
    elif args.action == "table":
        print(results_table(full=args.full))
    return 0


def is_distillation_run(run_dir: str) -> bool:
    """Whether ``run_dir`` holds a ``fewshot distill`` run (its ``result.json``)."""
    return (Path(run_dir) / RESULT_FILE).is_file()


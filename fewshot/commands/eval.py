"""``fewshot eval RUN_DIR|CHECKPOINT|PRETRAINED_NAME``: mean and 95% CI over a fixed test episode set.

Usage::

    fewshot eval runs/sine --episodes 600
    fewshot eval runs/omni/best.pt --split val --steps 5 --json
    fewshot eval omniglot-5w1s-maml --json           # a pretrained model
    fewshot eval omniglot-5w1s-maml --bn-mode transductive   # with batch statistics (the papers' protocol)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .. import pretrained
from ..checks import check_count
from ..config import TrainConfig
from ..reporting import report_on_fixed_episodes
from ..training.build import TEST_SEED, build_learner_from_config, identity, resolve_device
from ..training.checkpoint import load_checkpoint, load_learner_state
from ..training.loop import BEST, LAST, config_of_checkpoint, load_run_config


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a run, checkpoint or pretrained model",
                              description="Accuracy (or MSE for regression) over a fixed seeded episode set, "
                                          "mean and 95%% CI (1.96 * sample std / sqrt(episodes)).")
    p.add_argument("target", metavar="RUN_DIR|CHECKPOINT|PRETRAINED_NAME")
    p.add_argument("--episodes", type=int, default=None, help="number of episodes (default: the config's, 600)")
    p.add_argument("--split", default=None, help="data split (default: the config's test split)")
    p.add_argument("--steps", type=int, default=None, help="inner steps at test (default: the learner's eval steps)")
    p.add_argument("--seed", type=int, default=None, help="seed of the fixed episode set (default 2)")
    p.add_argument("--root", default=None, help="data root (default: the config's, else $FEWSHOT_DATA)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--bn-mode", default=None, choices=("transductive", "running", "frozen"),
                   help="batch-norm mode at test (default: the model's; transductive = batch statistics, the "
                        "papers' protocol; see docs/batchnorm.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def resolve_target(target: str, device: torch.device) -> tuple[torch.nn.Module, TrainConfig, str]:
    """(learner, TrainConfig, description) for a run dir, a checkpoint file or a pretrained name."""
    path = Path(target)
    if path.is_dir():
        cfg = load_run_config(path)
        ckpt_path = path / BEST if (path / BEST).exists() else path / LAST
        ckpt = load_checkpoint(ckpt_path, expect=identity(cfg))
    elif path.is_file() or target.endswith(".pt"):
        ckpt_path = path
        ckpt = load_checkpoint(path)
        cfg = config_of_checkpoint(ckpt)
    else:
        learner, cfg, _ = pretrained.load_with_config(target, device)
        return learner, cfg, f"pretrained {target}"
    learner = build_learner_from_config(cfg, "cpu")
    load_learner_state(learner, ckpt["learner"])
    return learner.to(device), cfg, f"{ckpt_path} (iteration {ckpt['iteration']})"


def run(args: argparse.Namespace) -> int:
    if args.episodes is not None:
        check_count(args.episodes, "--episodes")
    if args.steps is not None:
        check_count(args.steps, "--steps")
    device = resolve_device(args.device)
    learner, cfg, what = resolve_target(args.target, device)
    if args.root is not None:
        cfg.data.root = args.root
    report = report_on_fixed_episodes(learner, cfg, episodes=args.episodes, split=args.split, steps=args.steps,
                             seed=TEST_SEED if args.seed is None else args.seed, device=device,
                             bn_mode=args.bn_mode)
    if args.json:
        print(json.dumps(report))
    else:
        scale, unit = (100.0, "%") if report["metric"] == "accuracy" else (1.0, "")
        setting = (f"{report['ways']}-way {report['shots']}-shot, {report['queries']} queries"
                   if report["ways"] else f"{report['shots']}-shot, {report['queries']} query points")
        print(f"{what}: {report['dataset']} {report['split']} {setting}, {report['episodes']} episodes: "
              f"{report['metric']} {scale * report['mean']:.2f}{unit} ± {scale * report['ci95']:.2f}{unit} (95% CI)")
    return 0

"""``fewshot eval RUN_DIR|CHECKPOINT|PRETRAINED_NAME``: mean and 95% CI over a fixed test episode
set.

Usage::

    fewshot eval runs/sine --episodes 600
    fewshot eval runs/omni/best.pt --split val --steps 5 --json
    fewshot eval omniglot-5w1s-maml --json           # a pretrained model
    fewshot eval omniglot-5w1s-maml --data my_chars/ --ways 20 --shots 1 --queries 5 \
        --episodes 200 --seed 0
    # with batch statistics (the papers' protocol)
    fewshot eval omniglot-5w1s-maml --bn-mode transductive
"""
from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from episodes.preprocessing import INTERPOLATIONS

from .. import pretrained
from ..checks import check_count
from ..config import TrainConfig
from ..config.manifest import DISTILLED_DATA
from ..errors import CheckpointError, ConfigError
from ..learners import GradientLearner
from ..precision import PRECISIONS, autocast, resolve_precision
from ..reporting import EpisodeProtocol, Execution, report_on_fixed_episodes, report_on_folder
from ..reporting.folder import model_preprocessing
from ..runtime import distributed, launch
from ..runtime.allocator import tune_allocator
from ..training.build import TEST_SEED, build_learner_from_config, resolve_device, run_identity
from ..training.checkpoint import load_checkpoint, load_learner_state
from ..training.distill import mean_ci, trained_network_accuracies
from ..training.run_folder import (
    BEST,
    LAST,
    config_of_checkpoint,
    load_run_config,
    lock_held_elsewhere,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a run, checkpoint or pretrained model",
                              description="Accuracy (or MSE for regression) over a fixed seeded "
                                          "episode set, "
                                          "mean and 95% CI (1.96 * sample std / sqrt(episodes)).")
    p.add_argument("target", metavar="RUN_DIR|CHECKPOINT|PRETRAINED_NAME")
    p.add_argument("--inits", type=int, default=None, metavar="N",
                   help="distilled data for random initialisations: test N fresh networks "
                        "(default: the manifest's count)")
    p.add_argument("--episodes", type=int, default=None,
                   help="number of episodes (default: the config's, 600)")
    p.add_argument("--split", default=None, help="data split (default: the config's test split)")
    p.add_argument("--steps", type=int, default=None,
                   help="inner steps at test (default: the learner's eval steps)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the fixed episode set (default 2)")
    p.add_argument("--root", default=None,
                   help="data root (default: the config's, else $FEWSHOT_DATA)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--bn-mode", default=None,
                   choices=("transductive", "support", "running", "frozen"),
                   help="batch-norm mode at test (default: the model's; transductive = batch "
                        "statistics, the "
                        "papers' protocol; see docs/batchnorm.md)")
    p.add_argument("--best-step", action=argparse.BooleanOptionalAction, default=None,
                   help="when a task's support loss ends above its lowest value (adaptation "
                        "diverged), predict "
                        "with the lowest-support-loss step (default: the model's setting, on; "
                        "support labels "
                        "only); --no-best-step always uses the last step")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="bf16: autocast the forward passes to bfloat16 (float32 losses and batch "
                        "norm); default fp32")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads (default: 1 on CPU, or OMP_NUM_THREADS)")
    folder = p.add_argument_group("your own images (--data)")
    folder.add_argument("--data", metavar="DIR", default=None,
                        help="evaluate on an image folder (one subfolder per class), read with the "
                             "model's "
                             "preprocessing, instead of the config's test split")
    folder.add_argument("--ways", type=int, default=None,
                        help="classes per episode (default: the model's; another "
                             "number gives the model a zero head of that width)")
    folder.add_argument("--shots", type=int, default=None,
                        help="support images per class (default: the model's)")
    folder.add_argument("--queries", type=int, default=None,
                        help="query images per class (default: the model's)")
    folder.add_argument("--invert", action=argparse.BooleanOptionalAction, default=None,
                        help="force the polarity (default: detected from the images' borders, one "
                             "line on stderr "
                             "says what was found): --invert when your images have dark strokes on "
                             "a light "
                             "background (like Omniglot's PNGs), --no-invert when they have light "
                             "strokes on a "
                             "dark background (like MNIST)")
    folder.add_argument("--interpolation", choices=sorted(INTERPOLATIONS), default=None,
                        help="override the model's resize filter")
    p.set_defaults(func=run)


def plural(count: int, one: str, many: str | None = None) -> str:
    """``"1 query"``, ``"5 queries"``: the count with its noun in the right number."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


def resolve_target(target: str, device: torch.device) -> tuple[GradientLearner, TrainConfig, str]:
    """(learner, TrainConfig, description) for a run dir, a checkpoint file or a pretrained name."""
    path = Path(target)
    if path.is_dir():
        cfg = load_run_config(path)
        ckpt_path = path / BEST if (path / BEST).exists() else path / LAST
        if not ckpt_path.exists():
            now = ("a training run is writing it now: " if lock_held_elsewhere(path) else "")
            raise CheckpointError(
                f"run folder {path} has no checkpoint yet ({LAST}): {now}training writes one every "
                f"{cfg.checkpoint_every} iterations, at its end and when stopped "
                "by Ctrl-C; "
                "evaluate it after that")
        ckpt = load_checkpoint(ckpt_path, expect=run_identity(cfg))
    elif path.is_file() or target.endswith(".pt"):
        ckpt_path = path
        ckpt = load_checkpoint(path)
        cfg = config_of_checkpoint(ckpt)
    else:
        # else load says what it is, or what is wrong with its folder
        if not pretrained.known(target):
            close = difflib.get_close_matches(target, pretrained.list(), n=1)
            hint = (f"did you mean the pretrained model '{close[0]}'?" if close else
                    "pass a run folder, a checkpoint file or a pretrained model name (`fewshot "
                    "pretrained list`)")
            if any(c in target for c in "/\\~") or target.startswith("."):
                raise CheckpointError(
                    f"{target} does not exist: check the path (a run folder or a checkpoint file)")
            raise CheckpointError(
                f"'{target}' is neither a file or folder here nor a pretrained model: {hint}")
        learner, cfg, _ = pretrained.load_with_config(target, device)
        return learner, cfg, f"pretrained {target}"
    learner = build_learner_from_config(cfg, "cpu")
    load_learner_state(learner, ckpt["learner"])
    return learner.to(device), cfg, f"{ckpt_path} (iteration {ckpt['iteration']})"


def run(args: argparse.Namespace) -> int:
    tune_allocator()
    if args.episodes is not None:
        check_count(args.episodes, "--episodes")
    if args.steps is not None:
        check_count(args.steps, "--steps")
    if args.threads is not None:
        check_count(args.threads, "--threads")
    device = resolve_device(args.device)
    if pretrained.known(args.target) and pretrained.manifest(args.target).kind == DISTILLED_DATA:
        return _run_distilled(args)
    threads = launch.default_layout(None, device, threads=args.threads).threads
    with launch.torch_threads(None if distributed.launched() and args.threads is None else threads):
        learner, cfg, what = resolve_target(args.target, device)
        if args.best_step is not None:
            learner.config.best_step = args.best_step
        with autocast(device, resolve_precision(args.precision, device)):
            return _run(args, learner, cfg, what, device)


def _protocol(args: argparse.Namespace) -> EpisodeProtocol:
    """The episodes and adaptation the command's options ask for."""
    seed = TEST_SEED if args.seed is None else args.seed
    return EpisodeProtocol(episodes=args.episodes, seed=seed, steps=args.steps,
                           bn_mode=args.bn_mode)


def _run(args: argparse.Namespace, learner: GradientLearner, cfg: TrainConfig, what: str,
         device: torch.device) -> int:
    if args.data is not None:
        return run_on_folder(args, learner, cfg, what, device)
    for flag in ("ways", "shots", "queries", "invert", "interpolation"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag} applies to --data DIR only: pass --data, or drop --{flag}")
    if args.root is not None:
        cfg.data.root = args.root
    report = report_on_fixed_episodes(learner, cfg, _protocol(args), split=args.split,
                                      run=Execution(device, progress=not args.quiet))
    if not distributed.is_main_process():  # under torchrun every rank has the report; one prints it
        return 0
    if args.json:
        print(json.dumps(report))
    else:
        scale, unit = (100.0, "%") if report["metric"] == "accuracy" else (1.0, "")
        if report["ways"]:
            setting = (f"{report['ways']}-way {report['shots']}-shot, "
                       f"{plural(report['queries'], 'query', 'queries')}")
        else:
            setting = (f"{report['shots']}-shot, "
                       f"{plural(report['queries'], 'query point', 'query points')}")
        print(
            f"{what}: {report['dataset']} {report['split']} {setting}, "
            f"{plural(report['episodes'], 'episode')}: "
            f"{report['metric']} {scale * report['mean']:.2f}{unit} ± "
            f"{scale * report['ci95']:.2f}{unit} (95% CI)")
    return 0


def run_on_folder(args: argparse.Namespace, learner: torch.nn.Module, cfg: TrainConfig, what: str,
                  device: torch.device) -> int:
    """``--data DIR``: fixed seeded episodes from the folder, read with the model's
    preprocessing."""
    for flag in ("ways", "shots", "queries"):
        if getattr(args, flag) is not None:
            check_count(getattr(args, flag), f"--{flag}")
    if args.split is not None:
        raise ConfigError(
            "--split names a split of the model's dataset; with --data the folder is the data: "
            "drop --split")
    prep = model_preprocessing(learner, cfg)
    changes = {"interpolation": args.interpolation} if args.interpolation is not None else {}
    protocol = replace(_protocol(args), ways=args.ways, shots=args.shots, queries=args.queries)
    report = report_on_folder(learner, cfg, args.data, protocol,
                              preprocessing=replace(prep, **changes), invert=args.invert,
                              run=Execution(device))
    print(f"{args.data}: {report['polarity_line']}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{what}: {report['data']} ({report['classes']} classes, {report['images']} images), "
              f"{report['ways']}-way {report['shots']}-shot, "
              f"{plural(report['queries'], 'query', 'queries')}, "
              f"{plural(report['episodes'], 'episode')}, {plural(report['steps'], 'step')}: "
              f"accuracy {100 * report['mean']:.2f}% "
              f"± {100 * report['ci95']:.2f}% (95% CI)")
    return 0


def _run_distilled(args: argparse.Namespace) -> int:
    """A distilled training set: networks trained on its images alone (from its fixed
    initialisation, or ``--inits`` fresh ones from ``--seed``), tested on the real test set (or,
    with ``--split train``, on the training images it was distilled from)."""
    split = "test" if args.split is None else args.split
    if split not in ("train", "test"):
        raise ConfigError(f"--split for distilled data is train or test, got {split!r}")
    for flag in ("data", "steps", "bn_mode", "ways", "shots", "queries", "episodes"):
        if getattr(args, flag, None) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} applies to meta-initializations, not to "
                              f"distilled data ({args.target}): drop it")
    run, cfg, manifest = pretrained.load_distilled(args.target)
    seed = 0 if args.seed is None else args.seed
    if args.inits is not None:
        check_count(args.inits, "--inits")
    inits = args.inits if args.inits is not None else manifest.get("eval_inits")
    accuracies = trained_network_accuracies(run, cfg, seed=seed, inits=inits, split=split)
    mean, ci95 = mean_ci(accuracies)
    report = {"name": args.target, "kind": manifest.kind, "metric": "accuracy", "mean": mean,
              "ci95": ci95, "inits": len(accuracies), "init": cfg.init, "seed": seed,
              "images": cfg.images, "dataset": cfg.dataset, "split": split}
    if args.json:
        print(json.dumps(report))
    else:
        spread = f" ± {100 * ci95:.2f}" if len(accuracies) > 1 else ""
        print(f"distilled {args.target}: {cfg.dataset} {split} accuracy {100 * mean:.2f}{spread}% "
              f"({plural(len(accuracies), 'network')} trained on {cfg.images} images)")
    return 0


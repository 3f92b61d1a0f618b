"""``fewshot train PRESET_OR_CONFIG``: meta-train a learner, with checkpoints and exact resume.

Usage::

    fewshot train sinusoid-maml --out runs/sine --iterations 2000
    fewshot train omniglot-5w1s-maml --set learner.inner_lr=1.0 --set meta_batch=16 --device auto
    fewshot train runs/sine/config.yaml --out runs/sine --resume
    # continue its run
    fewshot train --from-pretrained omniglot-5w1s-maml --iterations 60000 --device cuda
    fewshot train --list-presets
    fewshot train omniglot-5w1s-maml --nproc auto                    # data-parallel over every core
    # the same, launched by torchrun
    torchrun --nproc_per_node=2 -m fewshot train omniglot-5w1s-maml
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from ..checks import check_count
from ..config import apply_overrides, list_presets, load_config
from ..errors import ConfigError
from ..precision import PRECISIONS
from ..pretrained.training_state import continue_from_pretrained
from ..runtime import distributed, launch
from ..runtime.allocator import tune_allocator
from ..training import train
from ..training.build import resolve_device
from ..training.interrupt import TrainingInterrupted


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="meta-train a preset or config file",
        description="Meta-train a learner. Resumes automatically when --out already holds a "
                    "checkpoint.")
    p.add_argument("config", metavar="PRESET_OR_CONFIG", nargs="?",
                   help="a preset name (see --list-presets) or a .yaml/.json config file")
    p.add_argument("--out", default=None,
                   help="run directory (default: runs/<preset or config name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set learner.inner_lr=0.5 (repeatable)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or auto (default: the config's, auto)")
    p.add_argument("--seed", type=int, default=None,
                   help="training seed (weights init and task sampling)")
    p.add_argument("--iterations", type=int, default=None, help="number of meta-iterations")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="bf16: autocast the forward passes to bfloat16 (CPUs with AVX-512 "
                        "BF16/AMX, GPUs), float32 "
                        "weights, losses and batch norm (default: the config's, fp32)")
    p.add_argument("--resume", action="store_true", help="require resuming from --out/last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar (for CI/logs)")
    p.add_argument("--dist-timeout", type=float, default=distributed.DEFAULT_TIMEOUT_S,
                   metavar="SECONDS",
                   help="under torchrun: seconds a process waits for the others in a collective "
                        "before the job "
                        f"fails (default {distributed.DEFAULT_TIMEOUT_S})")
    p.add_argument("--from-pretrained", default=None, metavar="NAME",
                   help="continue the training run of pretrained model NAME exactly where it "
                        "stopped, from the "
                        "state it ships (default --out: runs/NAME; see docs/pretrained.md)")
    p.add_argument("--nproc", default=None, metavar="N|auto",
                   help="data-parallel processes on this machine, started with torch.distributed's "
                        "launcher (as "
                        "torchrun --standalone would); auto: one per core on CPU (one per GPU on "
                        "CUDA), reduced "
                        "to a divisor of meta_batch; default: auto with one torch thread each on "
                        "CPU, unless "
                        "--threads or OMP_NUM_THREADS is set (then 1); 1 on a GPU "
                        "(docs/scale-out.md)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads of each process (default: 1 on CPU, or OMP_NUM_THREADS)")
    p.add_argument("--list-presets", action="store_true", help="print the preset names and exit")
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        print("\n".join(list_presets()))
        return 0
    tune_allocator()  # before the data load: every later allocation meets the fixed thresholds
    if args.from_pretrained:
        return _from_pretrained(args)
    if not args.config:
        raise ConfigError(
            "no preset or config given: e.g. `fewshot train sinusoid-maml` (see --list-presets)")
    cfg = load_config(args.config)
    extra = list(args.overrides)
    if args.device is not None:
        extra.append(f"device={args.device}")
    if args.seed is not None:
        extra.append(f"seed={args.seed}")
    if args.iterations is not None:
        extra.append(f"iterations={args.iterations}")
    if args.precision is not None:
        extra.append(f"precision={args.precision}")
    cfg = apply_overrides(cfg, extra)
    out = Path(args.out) if args.out else Path("runs") / (cfg.preset or Path(args.config).stem)
    layout = _layout(args, cfg.meta_batch, resolve_device(cfg.device))
    if layout.processes > 1:
        if not args.quiet:
            print(f"starting {layout.describe()}", flush=True)
        try:
            launch.launch(layout.processes, _child_argv(args), threads=layout.threads or 1)
        except launch.LaunchInterrupted as stop:  # the processes saved the run; rank 0 said where
            return stop.exit_status
        return 0
    try:
        with launch.torch_threads(layout.threads):
            result = train(cfg, out, resume=True if args.resume else None, quiet=args.quiet,
                           dist_timeout=args.dist_timeout)
    except TrainingInterrupted as stop:
        return _interrupted(stop, args)
    return _report(result)


def _layout(args: argparse.Namespace, meta_batch: int, device) -> launch.Layout:
    """Processes and threads of this run: ``--nproc``/``--threads`` as given, else the default
    layout."""
    if args.threads is not None:
        check_count(args.threads, "--threads")
    if distributed.launched():  # torchrun (or our launcher) started this process: one of many
        if args.nproc is not None:
            raise ConfigError(
                "--nproc starts its own processes: leave it out under torchrun (whose "
                "--nproc_per_node sets the number of processes)")
        return launch.Layout(1, args.threads)
    if args.nproc is None:
        return launch.default_layout(meta_batch, device, threads=args.threads)
    nproc = launch.choose_nproc(args.nproc, meta_batch, device)
    if nproc == 1:
        return launch.Layout(1, args.threads)
    return launch.Layout(nproc, args.threads or launch.threads_per_process(nproc))


def _from_pretrained(args: argparse.Namespace) -> int:
    if args.config or args.seed is not None or args.resume:
        raise ConfigError(
            "--from-pretrained continues the model's own run: give no PRESET_OR_CONFIG, --seed or "
            "--resume (only --iterations, --device, --out and --set data.root=DIR)")
    extra = [*args.overrides, *([f"device={args.device}"] if args.device is not None else []),
             *([f"iterations={args.iterations}"] if args.iterations is not None else [])]
    if args.nproc not in (None, "1"):
        raise ConfigError("--from-pretrained continues the run in one process: drop --nproc")
    threads = launch.default_layout(None, resolve_device(args.device or "auto"),
                                    threads=args.threads).threads
    try:
        with launch.torch_threads(threads):
            return _report(
                continue_from_pretrained(args.from_pretrained, args.out, extra, quiet=args.quiet,
                                                    dist_timeout=args.dist_timeout))
    except TrainingInterrupted as stop:
        return _interrupted(stop, args)


def _interrupted(stop: TrainingInterrupted, args: argparse.Namespace) -> int:
    """One line (from the main process) naming the saved checkpoint and the command that resumes the
    run, and the signal's exit status (130 SIGINT, 143 SIGTERM) for requeue scripts."""
    if distributed.is_main_process():
        argv = [a for a in _child_argv(args) if a != "--resume"]
        if not args.out:
            argv.append(f"--out={stop.checkpoint.parent}")
        nproc = os.environ.get(launch.PROCESSES_ENV, args.nproc)
        if nproc is not None:  # the same layout: a bit-identical continuation
            argv.append(f"--nproc={nproc}")
        print(
            f"interrupted by {signal.Signals(stop.signum).name} at iteration {stop.iteration}: "
            "saved "
            f"{stop.checkpoint}; resume with: {shlex.join(['fewshot', *argv])}", file=sys.stderr,
              flush=True)
    return stop.exit_status


def _report(result) -> int:
    if not distributed.is_main_process():
        return 0
    best = ("n/a" if result.best_metric is None
            else f"{result.best_metric:.4f} at iteration {result.best_iteration}")
    note = f" (resumed from iteration {result.resumed_from})" if result.resumed_from else ""
    print(
        f"trained {result.iterations} iterations{note}; best validation {result.metric}: {best}; "
        "run: "
        f"{result.run_dir}")
    return 0


def _child_argv(args: argparse.Namespace) -> list[str]:
    """The command line of each launched process: this one without ``--nproc`` (rebuilt from the
    parsed arguments, so every option of the parser travels, whatever it is)."""
    argv = ["train"]
    for action in args.parser._actions:
        if action.dest in ("help", "nproc", "list_presets"):
            continue
        value = getattr(args, action.dest)
        if not action.option_strings:  # the positional preset or config
            argv.append(str(value))
        elif isinstance(action, argparse._StoreTrueAction):
            argv += [action.option_strings[-1]] if value else []
        elif isinstance(action, argparse._AppendAction):
            argv += [f"{action.option_strings[-1]}={v}" for v in value or []]
        elif value is not None and value != action.default:
            argv.append(f"{action.option_strings[-1]}={value}")
    return argv

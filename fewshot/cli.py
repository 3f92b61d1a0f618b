"""The ``fewshot`` console script: one subcommand per module in ``fewshot.commands``.

Usage: ``fewshot prepare omniglot --source DIR`` (see ``fewshot --help``).
Every expected failure (bad input, missing data, corrupt file) prints one ``error: ...`` line on
stderr and exits with status 2; nothing else is printed for it. Output cut short by a closed pipe
(``fewshot train --list-presets | head -1``) ends quietly with status 141 (128 + SIGPIPE, what a
shell reports for a program killed by the broken pipe), never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Any, NoReturn, Sequence

from episodes.errors import DataError

from . import __version__
from .errors import FewshotError, FewshotWarning
from .runtime import distributed

# Each module defines ``register(subparsers)``, which adds its parser with
# ``set_defaults(func=run)``.
COMMAND_MODULES = (
    "prepare",
    "show_episode",
    "train",
    "eval",
    "pretrained",
    "plot",
    "l2o",
    "distill",
    "hpo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fewshot", description="Few-shot episodic meta-learning.")
    parser.add_argument("--version", action="version", version=f"fewshot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"fewshot.commands.{name}").register(sub)
    return parser


def _show_warning(show: Any) -> Any:
    """A ``warnings.showwarning`` that prints our own warnings as one ``warning: ...`` line
    (Python's default adds the file, line number and source line, which mean nothing to a
    command-line user)."""
    def one_line(message: Warning | str, category: type[Warning], *args: Any,
                 **kwargs: Any) -> None:
        if issubclass(category, FewshotWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            show(message, category, *args, **kwargs)
    return one_line


# Exit status after the reader of stdout went away: 128 + SIGPIPE(13), as if killed by the signal.
BROKEN_PIPE_STATUS = 141


def _silence_stdout() -> None:
    """Point stdout's file descriptor at /dev/null, so the interpreter's final flush of the buffered
    output that could not be written raises nothing (the recipe of Python's ``signal`` docs, "Note
    on SIGPIPE")."""
    try:
        fd = sys.stdout.fileno()
    # a stand-in stdout without a descriptor (main called in-process)
    except (OSError, ValueError, AttributeError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    # argparse would print the top-level usage, which does not show the subcommand's options
    if unknown:
        command = " ".join(
            ["fewshot", *(v for k, v in vars(args).items() if k.endswith("command") and v)])
        print(
            f"error: {command} does not take {' '.join(unknown)}: see `{command} --help` for its "
            "options",
              file=sys.stderr)
        return 2
    try:
        # restores showwarning on exit (main is also called in-process)
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning(warnings.showwarning)
            result = args.func(args)
            # inside the try: a closed pipe shows up here, not at interpreter exit
            sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_STATUS
    except (DataError, FewshotError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


def entry() -> NoReturn:
    """The console script and ``python -m fewshot``: :func:`main`'s status as the process's exit
    status.

    A rank of a torchrun job (or of ``--nproc``) leaves through
    :func:`fewshot.runtime.distributed.leave`, without the interpreter's finalization, which can
    abort a process that used a gloo group.
    """
    status = main()
    if distributed.launched():
        distributed.leave(status)
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    entry()

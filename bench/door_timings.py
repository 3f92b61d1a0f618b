"""The quick start's wall time on a quiet machine and beside one CPU-bound job, before and after the
default CPU layout (issue 34): ``fewshot train`` as a new user runs it.

Each case runs the command in a fresh process, alternating the layouts round by round; "busy" starts
one CPU-bound process (a Python busy loop, as another user's job) before the command and stops it
after. "before" is torch's own threading (``--nproc 1 --threads <cores>``: one process, one thread
per core, what ``fewshot train`` did by default); "after" is the default layout. Nothing else of
ours may run meanwhile.

Usage: ``FEWSHOT_DATA=<store root> python bench/door_timings.py --rounds 3 --out
bench/results/door_timings.json``
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORES = len(os.sched_getaffinity(0))
TRAIN_LAYOUTS = {"before (torch's threads)": ["--nproc", "1", "--threads", str(CORES)],
                 "after (default)": []}
EVAL_LAYOUTS = {"before (torch's threads)": ["--threads", str(CORES)], "after (default)": []}
# case -> (command, whether it takes --out, its layouts)
CASES = {
    "sinusoid 5000 it": (
        ["train", "sinusoid-maml", "--iterations", "5000", "--device", "cpu", "--quiet"], True,
                         TRAIN_LAYOUTS),
    "omniglot-5w1s-maml 300 it": (
        ["train", "omniglot-5w1s-maml", "--iterations", "300", "--device", "cpu",
                                   "--quiet", "--set", "val_every=0"], True, TRAIN_LAYOUTS),
    "eval omniglot-5w1s-maml 600 episodes": (
        ["eval", "omniglot-5w1s-maml", "--device", "cpu", "--quiet"], False,
                                             EVAL_LAYOUTS),
}


def timed(args: list[str], busy: bool, out_dir: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            out_args = ["--out", str(Path(out) / "run")] if out_dir else []
            subprocess.run([sys.executable, "-m", "fewshot", *args, *out_args], env=env, check=True,
                           capture_output=True)
            return time.perf_counter() - start
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for case, (cmd, out_dir, layouts) in CASES.items():
            for busy in (False, True):
                for layout, extra in layouts.items():
                    key = f"{case} | {'busy' if busy else 'quiet'} | {layout}"
                    walls.setdefault(key, []).append(timed(cmd + extra, busy, out_dir))
                    print(f"{key}: {walls[key][-1]:.1f} s", flush=True)
    rows = {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "runs": v}
            for k, v in walls.items()}
    for case, (_, _, layouts) in CASES.items():
        for layout in layouts:
            quiet, busy = (rows[f"{case} | {state} | {layout}"]["median_s"]
                           for state in ("quiet", "busy"))
            rows[f"{case} | busy/quiet | {layout}"] = {"ratio": busy / quiet}
    result = {"cores": CORES, "rounds": args.rounds, "rows": rows}
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""bf16 vs float32 at equal iterations: the same preset, seed and episodes trained twice with
``fewshot train`` (``--precision fp32`` and ``--precision bf16``), then both final models tested on
the same fixed test episodes in float32, and the CPU seconds per iteration of each.  The question:
does bf16 cost accuracy?  The answer is the two validation curves and test accuracies with their 95%
CIs.

Usage: ``FEWSHOT_DATA=<root with the Omniglot store> python bench/precision_ab.py --iterations 1000
--out bench/results/precision_ab.json`` (one thread; the two runs one after the other)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from fewshot.precision import cpu_has_native_bf16
from fewshot.training.metrics_log import read_metrics


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="omniglot-5w1s-maml")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="extra config changes for both runs (e.g. meta_batch=8)")
    p.add_argument("--episodes", type=int, default=600, help="test episodes")
    p.add_argument("--out", default="bench/results/precision_ab.json")
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    fs = [sys.executable, "-m", "fewshot"]
    results = {"preset": args.preset, "iterations": args.iterations, "overrides": args.overrides,
               "native_bf16": cpu_has_native_bf16(), "threads": 1, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            out = Path(tmp) / precision
            sets = [x for o in args.overrides for x in ("--set", o)]
            before = _cpu_seconds()
            subprocess.run(
                [*fs, "train", args.preset, "--out", str(out), "--iterations", str(args.iterations),
                            "--precision", precision, "--device", "cpu", "--quiet", *sets], env=env,
                           check=True)
            cpu = _cpu_seconds() - before
            vals = [r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "val"]
            test = json.loads(
                subprocess.run([*fs, "eval", str(out), "--episodes", str(args.episodes), "--json",
                                              "--quiet"], env=env, check=True, capture_output=True,
                                             text=True).stdout)
            results["runs"][precision] = {
                "cpu_seconds_per_iteration_incl_validation": cpu / args.iterations,
                "validation": [{k: r[k] for k in ("iteration", "accuracy", "ci95")} for r in vals],
                "test": {"mean": test["mean"], "ci95": test["ci95"], "episodes": test["episodes"],
                         "bn_mode": test.get("bn_mode")},
            }
            print(precision, json.dumps(results["runs"][precision]["test"]), flush=True)
    a, b = results["runs"]["fp32"]["test"], results["runs"]["bf16"]["test"]
    results["test_difference"] = b["mean"] - a["mean"]
    results["within_ci"] = abs(b["mean"] - a["mean"]) <= a["ci95"] + b["ci95"]
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}))


if __name__ == "__main__":
    main()

"""Meta-training throughput with 1 and N processes (torchrun, gloo on CPU): iterations per second.

Usage: ``python bench/scaling.py [--preset omniglot-5w1s-maml] [--iterations 30] [--procs 1 2]``
(needs the preset's data, e.g. ``FEWSHOT_DATA`` with a prepared Omniglot store).  Each process uses
one torch thread, so on a machine with C cores up to C processes run without contention.  Rates are
measured between the start of iteration ``--warmup`` and the start of the last one (startup, data
loading and the first iterations excluded), from timestamps the driver records around the task
source's ``sample`` (called once per iteration).  Results: bench/results/scaling.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DRIVER = textwrap.dedent('''
    import json, os, sys, time
    import episodes
    from fewshot.config import apply_overrides, load_config
    from fewshot.training import train
    preset, out, stamps, *overrides = sys.argv[1:]
    times = []
    for cls in (episodes.EpisodeSampler, episodes.ShardedSource, episodes.SinusoidTasks):
        original = cls.sample
        def sample(self, *a, _original=original, **k):
            times.append(time.perf_counter())
            return _original(self, *a, **k)
        cls.sample = sample
    train(apply_overrides(load_config(preset), overrides), out, quiet=True)
    if os.environ.get("RANK", "0") == "0":
        json.dump(times, open(stamps, "w"))
''')


def run(procs: int, preset: str, iterations: int, overrides: list[str], work: Path) -> list[float]:
    driver = work / "driver.py"
    driver.write_text(DRIVER)
    out, stamps = work / f"run{procs}", work / f"stamps{procs}.json"
    args = [str(driver), preset, str(out), str(stamps), f"iterations={iterations}", "val_every=0",
            f"checkpoint_every={iterations}", "device=cpu", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = ([sys.executable, *args] if procs == 1 else
           [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={procs}", *args])
    subprocess.run(cmd, env=env, check=True)
    # ShardedSource.sample calls EpisodeSampler.sample_indices only, so one stamp per iteration
    # either way
    return json.loads(stamps.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="omniglot-5w1s-maml")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for procs in args.procs:
            stamps = run(procs, args.preset, args.iterations, args.overrides, Path(tmp))
            span = stamps[args.warmup:]
            rate = (len(span) - 1) / (span[-1] - span[0])
            rows.append({"processes": procs, "iterations_per_s": rate})
            print(f"{procs} process(es): {rate:.3f} it/s", flush=True)
    base = rows[0]["iterations_per_s"]
    for r in rows:
        r["speedup"] = r["iterations_per_s"] / base
    result = {"preset": args.preset, "overrides": args.overrides, "iterations": args.iterations,
              "warmup": args.warmup, "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(),
              "torch": torch.__version__, "threads_per_process": 1, "rows": rows}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Data-parallel scaling: `{args.preset}` "
        f"({' '.join(args.overrides) or 'preset settings'})", "",
        f"`python bench/scaling.py` on {result['cores']} cores, torch {result['torch']}, one "
        "torch thread per "
        f"process, gloo; iterations {args.warmup}..{args.iterations} timed.", "",
        "| processes | iterations / s | speed-up |", "|---|---|---|"]
    lines += [f"| {r['processes']} | {r['iterations_per_s']:.3f} | {r['speedup']:.2f}x |"
              for r in rows]
    (out / "scaling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

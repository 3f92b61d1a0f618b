"""Memory and time of one hypergradient of a 1000-step training run, each way fewshot.bilevel takes
it: reverse mode through the whole unroll (plain, and checkpointed every k steps), truncated to the
last K steps, and implicit (Neumann series, CG).

Setting: the 784-128-10 ReLU MLP of ``fewshot hpo`` on 1000 MNIST training images (full-batch
gradient descent, lr 0.1), a weight decay per weight as the hyperparameter (101,770 of them),
validation loss on 1000 other training images.  Memory is the peak of the bytes autograd holds for
backward (tensors saved by the graph, counted through saved-tensor hooks: deterministic, and what
grows with the steps), and the peak resident set of a fresh process per method; time is wall
seconds of one hypergradient, one thread, the training run included (the implicit methods train
without a graph first, then take the hypergradient where training got).

Usage::

    # writes bench/results/bilevel_costs.{json,md}
    python bench/bilevel_costs.py --root /tmp/fewshot
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "unrolled, whole run": dict(kind="unrolled", checkpoint=0, truncate=None),
    "unrolled, checkpoint every 10": dict(kind="unrolled", checkpoint=10, truncate=None),
    "unrolled, checkpoint every 32": dict(kind="unrolled", checkpoint=32, truncate=None),
    "truncated, last 10 steps": dict(kind="unrolled", checkpoint=0, truncate=10),
    "implicit, Neumann 5 terms": dict(kind="implicit", solver="neumann", terms=5),
    "implicit, CG 20 steps": dict(kind="implicit", solver="cg", terms=20),
}


class SavedBytes:
    """Bytes held by autograd graphs, through saved-tensor hooks."""

    def __init__(self) -> None:
        self.live = self.peak = 0

    def pack(self, t: torch.Tensor):
        tracker, size = self, t.numel() * t.element_size()

        class Held:
            def __init__(self) -> None:
                self.t = t
                tracker.live += size
                tracker.peak = max(tracker.peak, tracker.live)

            def __del__(self) -> None:
                tracker.live -= size

        return Held()

    @staticmethod
    def unpack(held) -> torch.Tensor:
        return held.t


def measure(name: str, root: str, steps: int) -> dict:
    from fewshot.bilevel import InnerProblem, implicit_hypergradient, unroll, unrolled_hypergradient
    from fewshot.rules import SGD
    from fewshot.training.hpo import HPOConfig, forward, make_task

    torch.set_num_threads(1)
    spec = METHODS[name]
    task = make_task(HPOConfig(data_root=root), seed=0)
    log_decay = nn.ParameterDict({n: nn.Parameter(torch.full_like(p, math.log(1e-4)))
                                  for n, p in task.init.items()})

    def loss(p, x, y, step):
        penalty = sum((log_decay[n].exp() * p[n] * p[n]).sum() for n in p)
        return F.cross_entropy(forward(p, x), y) + 0.5 * penalty

    problem = InnerProblem(loss, SGD(list(task.init), 0.1), steps, task.x, task.y, hyper=log_decay)
    outer = lambda p: F.cross_entropy(forward(p, task.xv), task.yv)  # noqa: E731
    hyper = list(log_decay.values())
    trained, train_seconds = None, 0.0
    if spec["kind"] == "implicit":  # the trained parameters first, as the method takes them
        start = time.perf_counter()
        with torch.no_grad():
            trained = unroll(problem, task.init).params
        train_seconds = time.perf_counter() - start
    tracker = SavedBytes()
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack):
        if spec["kind"] == "unrolled":
            hg = unrolled_hypergradient(problem, task.init, outer, hyper,
                                        checkpoint=spec["checkpoint"], truncate=spec["truncate"])
        else:
            hg = implicit_hypergradient(lambda p: loss(p, task.x, task.y, 0), trained, outer, hyper,
                                        solver=spec["solver"], terms=spec["terms"], alpha=0.1)
    seconds = time.perf_counter() - start + train_seconds
    gc.enable()
    norm = math.sqrt(sum(float((g * g).sum()) for g in hg.grads))
    return {"method": name, "steps": steps, "saved_mb": tracker.peak / 2**20, "seconds": seconds,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "hypergradient_norm": norm, "hyperparameters": sum(h.numel() for h in hyper)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=None, help="data root holding the MNIST store")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        print(json.dumps(measure(args.probe, args.root, args.steps)))
        return 0
    rows = []
    for name in METHODS:  # a fresh process each: its peak resident set is its own
        cmd = [sys.executable, __file__, "--probe", name, "--steps", str(args.steps)]
        if args.root:
            cmd += ["--root", args.root]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    lines = ["| method | autograd-saved MB (peak) | process peak RSS MB | seconds "
             "| norm of the hypergradient |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['saved_mb']:.1f} | {r['max_rss_mb']:.0f} | "
                     f"{r['seconds']:.1f} | {r['hypergradient_norm']:.4g} |")
    table = "\n".join(lines)
    out = ROOT / "bench" / "results"
    (out / "bilevel_costs.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "bilevel_costs.md").write_text(
        f"# One hypergradient of a {args.steps}-step training run (bench/bilevel_costs.py)\n\n"
        f"{rows[0]['hyperparameters']} hyperparameters (a weight decay per weight of the "
        "784-128-10 MLP), 1000 MNIST training images, full-batch GD at lr 0.1; one thread.\n\n"
        + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

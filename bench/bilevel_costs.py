"""Memory and time of one hypergradient of a 1000-step training run, each way fewshot.bilevel takes
it: reverse mode through the whole unroll (plain, and checkpointed every k steps), truncated to the
last K steps, and implicit (Neumann series, CG).

Setting: the 784-128-10 ReLU MLP of ``fewshot hpo`` on 1000 MNIST training images (full-batch
gradient descent, lr 0.1), a weight decay per weight as the hyperparameter (101,770 of them),
validation loss on 1000 other training images.  Memory is the peak of the bytes autograd holds for
backward (each storage a graph saves, counted once through saved-tensor hooks: deterministic, and
what grows with the steps), measured in one fresh process per method, and the growth of the
resident set (sampled every millisecond) in another, without hooks (the hooks' own bookkeeping
would add to it); time is wall
seconds of one hypergradient in that second process, one thread, the training run included (the
implicit methods train without a graph first, then take the hypergradient where training got).

Usage::

    # writes bench/results/bilevel_costs.{json,md}
    python bench/bilevel_costs.py --root /tmp/fewshot
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import subprocess
import sys
import threading
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


class ResidentPeak:
    """The largest resident set (MB) of this process while active, sampled from /proc/self/statm
    every millisecond (ru_maxrss cannot see below the peak that loading the data left)."""

    def __init__(self) -> None:
        self.page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        self.before = self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def now(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page_mb

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> ResidentPeak:
        self.before = self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


class Held:
    """One saved tensor, counted in ``tracker`` until autograd frees it."""

    def __init__(self, tracker: SavedBytes, t: torch.Tensor, key: int) -> None:
        self.tracker, self.t, self.key = tracker, t, key

    def __del__(self) -> None:
        self.tracker.release(self.key)


class SavedBytes:
    """Bytes held by autograd graphs, through saved-tensor hooks: each storage counted once,
    however many operations save it (the training images are saved by every step)."""

    def __init__(self) -> None:
        self.live = self.peak = 0
        self.storages: dict[int, list[int]] = {}  # data pointer -> [saved references, bytes]

    def pack(self, t: torch.Tensor) -> Held:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in self.storages:
            self.storages[key] = [0, storage.nbytes()]
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self.storages[key][0] += 1
        # detached: holding the tensor itself would hold its grad_fn, and an operation that saves
        # its own output (exp, tanh, ...) would then sit in a reference cycle, alive until the GC
        return Held(self, t.detach(), key)

    def release(self, key: int) -> None:
        entry = self.storages[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.storages[key]

    @staticmethod
    def unpack(held: Held) -> torch.Tensor:
        return held.t


def measure(name: str, root: str, steps: int, count_saved: bool) -> dict:
    """One hypergradient by method ``name``: its time and the process's peak resident set (plain),
    or the peak bytes autograd holds (``count_saved``: under saved-tensor hooks, which slow it and
    add to the resident set themselves)."""
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
    with (torch.autograd.graph.saved_tensors_hooks(tracker.pack, tracker.unpack) if count_saved
          else contextlib.nullcontext()), ResidentPeak() as resident:
        if spec["kind"] == "unrolled":
            hg = unrolled_hypergradient(problem, task.init, outer, hyper,
                                        checkpoint=spec["checkpoint"], truncate=spec["truncate"])
        else:
            hg = implicit_hypergradient(lambda p: loss(p, task.x, task.y, 0), trained, outer, hyper,
                                        solver=spec["solver"], terms=spec["terms"], alpha=0.1)
    seconds = time.perf_counter() - start + train_seconds
    gc.enable()
    norm = math.sqrt(sum(float((g * g).sum()) for g in hg.grads))
    if count_saved:
        return {"saved_mb": tracker.peak / 2**20}
    return {"method": name, "steps": steps, "seconds": seconds, "rss_before_mb": resident.before,
            "rss_peak_mb": resident.peak,
            "hypergradient_norm": norm, "hyperparameters": sum(h.numel() for h in hyper)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=None, help="data root holding the MNIST store")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--saved", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        print(json.dumps(measure(args.probe, args.root, args.steps, args.saved)))
        return 0
    rows = []
    for name in METHODS:  # fresh processes: each peak resident set is its own
        row: dict = {}
        for extra in ([], ["--saved"]):
            cmd = [sys.executable, __file__, "--probe", name, "--steps", str(args.steps), *extra]
            if args.root:
                cmd += ["--root", args.root]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
            row.update(json.loads(done.stdout.strip().splitlines()[-1]))
        rows.append(row)
        print(rows[-1], file=sys.stderr)
    lines = ["| method | autograd-saved MB (peak) | resident set growth MB (peak) | seconds "
             "| norm of the hypergradient |",
             "|---|---|---|---|---|"]
    for r in rows:
        grown = r["rss_peak_mb"] - r["rss_before_mb"]
        lines.append(f"| {r['method']} | {r['saved_mb']:.1f} | {grown:.0f} | "
                     f"{r['seconds']:.1f} | {r['hypergradient_norm']:.4g} |")
    table = "\n".join(lines)
    out = ROOT / "bench" / "results"
    (out / "bilevel_costs.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "bilevel_costs.md").write_text(
        f"# One hypergradient of a {args.steps}-step training run (bench/bilevel_costs.py)\n\n"
        f"{rows[0]['hyperparameters']} hyperparameters (a weight decay per weight of the "
        "784-128-10 MLP), 1000 MNIST training images, full-batch GD at lr 0.1; one thread. "
        "Saved MB: each storage autograd holds counted once (saved-tensor hooks, their own run); "
        "resident set and seconds: a run without hooks, its peak resident set (sampled every "
        "millisecond) minus the process's before the hypergradient "
        f"({rows[0]['rss_before_mb']:.0f} MB: torch and the data).\n\n"
        + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Evaluation time of two checkouts of fewshot, interleaved: the bench/peers.py evaluation row (600
5-way 1-shot episodes, 1 query per class, 3 steps, ``evaluate`` on chunks of 25) run in alternating
child processes, one per checkout and round, so that load on a shared machine hits both alike.

Why a second checkout: a speed-up is claimed against the code as it was, measured in the same run
(absolute times on a shared machine are noise).  Make the old checkout with e.g.
``git worktree add /tmp/fewshot-old <commit>`` or ``git archive <commit> | tar -x -C
/tmp/fewshot-old``.

Usage::

    python bench/ab_eval.py /tmp/fewshot-old . --rounds 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def child(episodes: int) -> None:
    """Time one evaluation of ``episodes`` episodes with the fewshot on ``sys.path`` (after a
    warm-up)."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peers

    from episodes import TaskBatch
    from fewshot import MAML, MAMLConfig

    batch = peers.batch_for(peers.Setting("eval", 1, 3, True), episodes, seed=1)
    learner = MAML(peers.fewshot_model(),
                   MAMLConfig(inner_steps=3, inner_lr=peers.INNER_LR, adapt_norm=True)).eval()

    def run(n: int) -> None:
        for start in range(0, n, 25):
            sl = slice(start, start + 25)
            learner.evaluate(TaskBatch(batch.support_x[sl], batch.support_y[sl], batch.query_x[sl],
                                       batch.query_y[sl], 5))

    run(25)  # warm-up: first-call costs (allocator, oneDNN primitives) are not evaluation time
    t0 = time.perf_counter()
    run(episodes)
    print(time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", help="root of the old checkout (holds fewshot/ and episodes/)")
    p.add_argument("new", help="root of the new checkout")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.episodes)
        return
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(args.rounds):
        for name, root in (("old", args.old), ("new", args.new)):
            env = {**os.environ, "PYTHONPATH": str(Path(root).resolve()), "OMP_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, "-W", "ignore", __file__, root, root, "--child",
                                  "--episodes", str(args.episodes)], capture_output=True, text=True,
                                 check=True,
                                 env=env)
            times[name].append(float(out.stdout.strip().splitlines()[-1]))
            print(f"{name}: {times[name][-1]:.2f} s", flush=True)
    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    print(
        f"evaluation, {args.episodes} episodes: old {old:.2f} s, new {new:.2f} s (median of "
        f"{args.rounds} "
        f"interleaved rounds): {old / new:.2f}x")


if __name__ == "__main__":
    main()

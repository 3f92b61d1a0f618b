"""Second-order MAML's memory per inner step (fewshot vs learn2learn), and what ``checkpoint_steps``
buys.

The bench/peers.py setting: Conv4-64 (stride 2), 28x28 inputs, 5-way 1-shot, 15 queries per class,
inner LR 0.4, every parameter adapted, one torch thread.  Two measurements:

1. **Saved tensors per inner step**, per task: the bytes of distinct storages autograd saves
   (``torch.autograd.graph.saved_tensors_hooks``) while building one task's meta-loss graph (inner
   loop + query forward), at 1 and at 5 inner steps; (5 - 1) / 4 is the cost of one step.  This is
   what the graph itself costs, independent of the allocator and of how many tasks are held at once.
2. **Peak resident-set growth** of one meta-gradient in a fresh process (the kernel's high-water
   mark reset just before, as bench/peers.py), back-propagating task by task
   (``learner.meta_backward``, learn2learn's documented loop), for several inner-step counts:
   fewshot storing every step, fewshot with ``checkpoint_steps=10`` (recomputation), learn2learn.
   The same process then times a second meta-gradient: the compute price of recomputation (shared
   machine: indicative only).

Usage (an interpreter that imports learn2learn adds its rows; see bench/install_learn2learn.sh)::

    python bench/memory_steps.py            # writes bench/results/memory_steps.{json,md}
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from peers import (
    INNER_LR,
    Setting,
    _peak_rss_mb,
    _rss_mb,
    batch_for,
    fewshot_model,
    l2l_backward,
    torch_bn_model,
)

from fewshot import MAML, MAMLConfig

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = 10
STEPS = (5, 10, 25, 100)
SYSTEMS = ("fewshot", f"fewshot, checkpoint_steps={CHECKPOINT}", "learn2learn")


def _learner(steps: int, checkpoint: int) -> MAML:
    return MAML(fewshot_model(), MAMLConfig(inner_steps=steps, inner_lr=INNER_LR, adapt_norm=True,
                                            checkpoint_steps=checkpoint, task_batching="loop"))


# ----------------------------------------------------------------------------- 1. saved tensors
def saved_mb(system: str, steps: int) -> float:
    """MB of distinct storages autograd saves for one task's meta-loss graph."""
    batch = batch_for(Setting("saved", 15, steps, False), 1)
    sizes: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        sizes[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if system == "fewshot":
            _learner(steps, 0).meta_loss(batch)
        else:
            import learn2learn as l2l

            learner = l2l.algorithms.MAML(torch_bn_model(fewshot_model()), lr=INNER_LR).clone()
            for _ in range(steps):
                learner.adapt(F.cross_entropy(learner(batch.support_x[0]), batch.support_y[0]))
            F.cross_entropy(learner(batch.query_x[0]), batch.query_y[0])
    return sum(sizes.values()) / 2**20


# ----------------------------------------------------------------------------- 2. peak memory
def probe(system: str, steps: int, meta_batch: int) -> tuple[float, float]:
    """(peak resident-set growth in MB of a first meta-gradient, seconds of a second one), in this
    process."""
    batch = batch_for(Setting("probe", 15, steps, False), meta_batch)
    if system == "learn2learn":
        import learn2learn as l2l

        maml = l2l.algorithms.MAML(torch_bn_model(fewshot_model()), lr=INNER_LR)
        s = Setting("probe", 15, steps, False)
        run = lambda: l2l_backward(maml, batch, s)  # noqa: E731
    else:
        learner = _learner(steps, CHECKPOINT if "checkpoint" in system else 0)
        run = lambda: learner.meta_backward(batch)  # noqa: E731
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # reset the peak resident set size (Linux >= 4.0)
    before = _rss_mb()
    run()
    peak = _peak_rss_mb() - before
    t0 = time.perf_counter()
    run()
    return peak, time.perf_counter() - t0


def markdown(result: dict) -> str:
    systems = [s for s in SYSTEMS if s in result["saved_mb_per_step"] or s in result["peak_mb"]]
    lines = ["# bench/memory_steps.py: memory per inner step, and checkpoint_steps", "",
             f"{result['machine']}; torch {result['torch']}, 1 thread; Conv4-64, 28x28, 5-way "
             "1-shot, 15 queries "
             f"per class, second order, meta-batch {result['meta_batch']} back-propagated task by "
             "task "
             "(peak memory is one task's). Other engineers' jobs were running: times are "
             "indicative.", "",
             "Saved tensors per task (autograd's saved storages, inner loop + query forward):", "",
             "| system | 1 step | 5 steps | per inner step |", "|---|---|---|---|"]
    for name, r in result["saved_mb_per_step"].items():
        lines.append(f"| {name} | {r['1']:.2f} MB | {r['5']:.2f} MB | {r['per_step']:.2f} MB |")
    lines += ["",
              "Peak resident-set growth of one meta-gradient (fresh process) and seconds of a "
              "second one:", "",
              "| inner steps | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    for steps in STEPS:
        cells = []
        for name in systems:
            r = result["peak_mb"].get(name, {}).get(str(steps))
            cells.append("–" if r is None else f"{r['peak_mb']:.0f} MB, {r['seconds']:.1f} s")
        lines.append(f"| {steps} | " + " | ".join(cells) + " |")
    growth = result["growth_mb_per_step"]
    lines += ["", "Peak growth per inner step (5 -> 25 steps): "
              + "; ".join(f"{n} {g:.2f} MB" for n, g in growth.items()) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meta-batch", type=int, default=2,
                   help="tasks per meta-gradient (the peak is one task's)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--probe", nargs=2, metavar=("SYSTEM", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.probe:
        print(*probe(args.probe[0], int(args.probe[1]), args.meta_batch))
        return
    try:
        import learn2learn  # noqa: F401
        systems = SYSTEMS
    except ImportError:
        systems = SYSTEMS[:2]
        print("learn2learn is not installed (bash bench/install_learn2learn.sh): fewshot rows only")
    saved = {}
    for name in ("fewshot", "learn2learn"):
        if name in systems:
            one, five = saved_mb(name, 1), saved_mb(name, 5)
            saved[name] = {"1": one, "5": five, "per_step": (five - one) / 4}
            print(f"saved tensors, {name}: {saved[name]['per_step']:.2f} MB per inner step",
                  flush=True)
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(ROOT)}
    peak: dict[str, dict[str, dict[str, float]]] = {name: {} for name in systems}
    for steps in STEPS:
        for name in systems:
            out = subprocess.run(
                [sys.executable, __file__, "--probe", name, str(steps), "--meta-batch",
                                  str(args.meta_batch)], capture_output=True, text=True, check=True,
                                 env=env)
            mb, seconds = map(float, out.stdout.split()[-2:])
            peak[name][str(steps)] = {"peak_mb": mb, "seconds": seconds}
            print(f"{steps:>3} steps, {name}: {mb:.0f} MB, {seconds:.1f} s", flush=True)
    result = {
        "machine": f"{platform.processor() or platform.machine()} (shared VM, {os.cpu_count()} "
                   "cores)",
        "torch": torch.__version__, "meta_batch": args.meta_batch,
        "checkpoint_steps": CHECKPOINT,
        "saved_mb_per_step": saved, "peak_mb": peak,
        "growth_mb_per_step": {n: (peak[n]["25"]["peak_mb"] - peak[n]["5"]["peak_mb"]) / 20
                                     for n in systems}}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "memory_steps.json").write_text(json.dumps(result, indent=2) + "\n",
                                               encoding="utf-8")
    (out_dir / "memory_steps.md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {out_dir / 'memory_steps.json'} and {out_dir / 'memory_steps.md'}")


if __name__ == "__main__":
    main()

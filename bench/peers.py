"""fewshot against learn2learn and higher on the same work: meta-training step time, peak memory and
evaluation time, with the meta-gradients checked equal.

Setting (issue 16): Conv4-64 on Omniglot-shaped 28x28 inputs (synthetic data: timing only), 5-way
1-shot, meta-batch 8, one Adam step per iteration, one torch thread.  The peers run the same weights
with ``torch.nn.BatchNorm2d`` (as their users do); fewshot runs its own ``Conv4`` (``StepBatchNorm2d``).
Systems are interleaved round by round so that load on a shared machine hits them alike; the table
reports medians and the ratio peer / fewshot (> 1: fewshot is faster).  Peak memory is measured in a
fresh process per system and setting: the growth of the peak resident set during one meta-gradient.
Every system back-propagates task by task, as its users' training loops do: the peers' documented
loops, and ``learner.meta_backward`` for fewshot (what ``fewshot train`` calls).  (Until
bench/results of 2026-11-30 the fewshot rows used ``meta_loss(batch).loss.backward()``, which holds all
8 tasks' graphs at once: that, not the graph itself, was the "19 MB per inner step": per task and
step both systems save the same 1.7 MB of tensors, see bench/memory_steps.py.)

Usage::

    bash bench/install_learn2learn.sh          # once: the peer (higher comes with .[dev])
    python bench/peers.py                      # prints the table, writes bench/results/peers.{json,md}
    python bench/peers.py --rounds 3 --quick   # a fast smoke run
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from episodes import TaskBatch
from fewshot import MAML, Conv4, MAMLConfig
from fewshot.nn import StepBatchNorm

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
INNER_LR = 0.4  # the same value for every system; every system adapts every parameter (adapt_norm=True)


@dataclass(frozen=True)
class Setting:
    """One row of the table."""

    name: str
    queries: int
    steps: int
    first_order: bool

    def label(self) -> str:
        order = "1st" if self.first_order else "2nd"
        return (f"{self.queries} quer{'y' if self.queries == 1 else 'ies'}, "
                f"{self.steps} step{'s' * (self.steps > 1)}, {order} order")


TIME_SETTINGS = [Setting("q15-s1-2nd", 15, 1, False), Setting("q15-s5-2nd", 15, 5, False),
                 Setting("q15-s5-1st", 15, 5, True), Setting("q1-s1-2nd", 1, 1, False)]
MEMORY_SETTINGS = [Setting("mem-s5", 15, 5, False), Setting("mem-s25", 15, 25, False)]


def batch_for(s: Setting, meta_batch: int, ways: int = 5, shots: int = 1, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(meta_batch, ways * shots, 1, 28, 28, generator=g)
    qx = torch.rand(meta_batch, ways * s.queries, 1, 28, 28, generator=g)
    sy = torch.arange(ways).repeat_interleave(shots).expand(meta_batch, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(s.queries).expand(meta_batch, -1).contiguous()
    return TaskBatch(sx, sy, qx, qy, ways)


def fewshot_model() -> nn.Module:
    torch.manual_seed(0)  # benchmark-only model init
    return Conv4(1, 5, hidden=64, image_size=28, pool=False)


def torch_bn_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every one-slot ``StepBatchNorm2d`` replaced by ``nn.BatchNorm2d`` (same
    weights and statistics): the model a learn2learn or higher user runs."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, StepBatchNorm):
                bn = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
                with torch.no_grad():
                    bn.weight.copy_(child.weight[0])
                    bn.bias.copy_(child.bias[0])
                    bn.running_mean.copy_(child.running_mean[0])
                    bn.running_var.copy_(child.running_var[0])
                setattr(parent, name, bn)
    return model


# ----------------------------------------------------------------------------- one meta-gradient each
def fewshot_grads(learner: MAML, batch: TaskBatch) -> list[torch.Tensor]:
    out = learner.meta_loss(batch)
    return list(torch.autograd.grad(out.loss, list(learner.parameters())))


def fewshot_step(learner: MAML, opt: torch.optim.Optimizer, batch: TaskBatch) -> None:
    opt.zero_grad()
    learner.meta_backward(batch)  # task by task, as the training loop and the peers' loops
    opt.step()


def l2l_backward(maml, batch: TaskBatch, s: Setting) -> None:
    """learn2learn's documented loop: clone, adapt, query loss, backward task by task."""
    for i in range(len(batch)):
        learner = maml.clone()
        for _ in range(s.steps):
            learner.adapt(F.cross_entropy(learner(batch.support_x[i]), batch.support_y[i]))
        (F.cross_entropy(learner(batch.query_x[i]), batch.query_y[i]) / len(batch)).backward()


def higher_backward(model: nn.Module, batch: TaskBatch, s: Setting) -> None:
    """higher's documented loop: monkeypatch, differentiable SGD, backward task by task."""
    import higher

    inner = torch.optim.SGD(model.parameters(), lr=INNER_LR)
    detach = (lambda grads: [g.detach() for g in grads]) if s.first_order else None  # first order in higher
    for i in range(len(batch)):
        with higher.innerloop_ctx(model, inner, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(s.steps):
                diffopt.step(F.cross_entropy(fmodel(batch.support_x[i]), batch.support_y[i]), grad_callback=detach)
            (F.cross_entropy(fmodel(batch.query_x[i]), batch.query_y[i]) / len(batch)).backward()


def make_systems(s: Setting, have_l2l: bool) -> dict[str, tuple[nn.Module, Callable[[TaskBatch], None]]]:
    """name -> (module holding the meta-parameters, function doing one meta-gradient + Adam step)."""
    base = fewshot_model()
    systems: dict[str, tuple[nn.Module, Callable[[TaskBatch], None]]] = {}
    ours = MAML(copy.deepcopy(base),
                MAMLConfig(inner_steps=s.steps, inner_lr=INNER_LR, first_order=s.first_order, adapt_norm=True))
    opt = torch.optim.Adam(ours.parameters(), 1e-3)
    systems["fewshot"] = (ours, lambda b: fewshot_step(ours, opt, b))
    if have_l2l:
        import learn2learn as l2l

        maml = l2l.algorithms.MAML(torch_bn_model(base), lr=INNER_LR, first_order=s.first_order)
        opt_l = torch.optim.Adam(maml.parameters(), 1e-3)

        def l2l_step(b: TaskBatch) -> None:
            opt_l.zero_grad()
            l2l_backward(maml, b, s)
            opt_l.step()
        systems["learn2learn"] = (maml, l2l_step)
    hmodel = torch_bn_model(base)
    opt_h = torch.optim.Adam(hmodel.parameters(), 1e-3)

    def higher_step(b: TaskBatch) -> None:
        opt_h.zero_grad()
        higher_backward(hmodel, b, s)
        opt_h.step()
    systems["higher"] = (hmodel, higher_step)
    return systems


def gradient_gap(s: Setting, batch: TaskBatch, have_l2l: bool) -> dict[str, float]:
    """Max |meta-gradient difference| between fewshot and each peer on the same weights and tasks."""
    base = fewshot_model()
    ours = MAML(copy.deepcopy(base),
                MAMLConfig(inner_steps=s.steps, inner_lr=INNER_LR, first_order=s.first_order, adapt_norm=True))
    ref = fewshot_grads(ours, batch)
    gaps = {}
    peers: dict[str, tuple[nn.Module, Callable[[], None]]] = {}
    if have_l2l:
        import learn2learn as l2l

        maml = l2l.algorithms.MAML(torch_bn_model(base), lr=INNER_LR, first_order=s.first_order)
        peers["learn2learn"] = (maml, lambda: l2l_backward(maml, batch, s))
    hmodel = torch_bn_model(base)
    peers["higher"] = (hmodel, lambda: higher_backward(hmodel, batch, s))
    for name, (module, backward) in peers.items():
        backward()
        # the peers' BN weights are [C]; ours [1, C]: compare flattened
        gaps[name] = max((a.flatten() - p.grad.flatten()).abs().max().item() for a, p in zip(ref, module.parameters()))
    return gaps


# ----------------------------------------------------------------------------- timing
def time_settings(args, have_l2l: bool) -> list[dict]:
    rows = []
    for s in TIME_SETTINGS:
        batch = batch_for(s, args.meta_batch)
        systems = make_systems(s, have_l2l)
        for _, step in systems.values():  # warm-up
            step(batch)
        times: dict[str, list[float]] = {name: [] for name in systems}
        for _ in range(args.rounds):
            for name, (_, step) in systems.items():
                t0 = time.perf_counter()
                step(batch)
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(v) for name, v in times.items()}
        rows.append({"setting": s.name, "label": s.label(), "median_s": med,
                     "ratio_vs_fewshot": {n: med[n] / med["fewshot"] for n in med if n != "fewshot"},
                     "max_grad_gap": gradient_gap(s, batch, have_l2l)})
        print(f"{s.label():<32}" + "".join(f"{n} {t:.3f}s  " for n, t in med.items()), flush=True)
    return rows


def time_evaluation(args, have_l2l: bool) -> dict:
    """Adapt + predict on ``args.eval_episodes`` 5-way 1-shot episodes (1 query per class, 3 steps),
    the shipped Omniglot models' evaluation shape."""
    s = Setting("eval", 1, 3, True)
    batch = batch_for(s, args.eval_episodes, seed=1)
    base = fewshot_model()
    ours = MAML(copy.deepcopy(base), MAMLConfig(inner_steps=3, inner_lr=INNER_LR, adapt_norm=True)).eval()

    def run_ours() -> None:
        for start in range(0, len(batch), 25):
            sl = slice(start, start + 25)
            ours.evaluate(TaskBatch(batch.support_x[sl], batch.support_y[sl], batch.query_x[sl], batch.query_y[sl], 5))

    runs = {"fewshot": run_ours}
    if have_l2l:
        import learn2learn as l2l

        maml = l2l.algorithms.MAML(torch_bn_model(base), lr=INNER_LR, first_order=True)

        def run_l2l() -> None:  # transductive BN as ours: train-mode batch norm
            for i in range(len(batch)):
                learner = maml.clone()
                for _ in range(3):
                    learner.adapt(F.cross_entropy(learner(batch.support_x[i]), batch.support_y[i]))
                with torch.no_grad():
                    learner(batch.query_x[i]).argmax(-1)
        runs["learn2learn"] = run_l2l
    times: dict[str, list[float]] = {n: [] for n in runs}
    for _ in range(max(1, args.rounds // 3)):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"{'evaluation, ' + str(args.eval_episodes) + ' episodes':<32}"
          + "".join(f"{n} {t:.2f}s  " for n, t in med.items()))
    return {"episodes": args.eval_episodes, "median_s": med,
            "ratio_vs_fewshot": {n: med[n] / med["fewshot"] for n in med if n != "fewshot"}}


# ----------------------------------------------------------------------------- memory
def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def memory_probe(system: str, setting: str, meta_batch: int) -> float:
    """Peak resident-set growth (MB) during one meta-gradient, in this (fresh) process: the kernel's
    high-water mark is reset just before (``/proc/self/clear_refs``), so import-time peaks don't count."""
    s = next(x for x in MEMORY_SETTINGS + TIME_SETTINGS if x.name == setting)
    batch = batch_for(s, meta_batch)
    base = fewshot_model()
    if system == "fewshot":
        learner = MAML(base,
                       MAMLConfig(inner_steps=s.steps, inner_lr=INNER_LR, first_order=s.first_order, adapt_norm=True))
        run = lambda: learner.meta_backward(batch)  # noqa: E731
    elif system == "learn2learn":
        import learn2learn as l2l

        maml = l2l.algorithms.MAML(torch_bn_model(base), lr=INNER_LR, first_order=s.first_order)
        run = lambda: l2l_backward(maml, batch, s)  # noqa: E731
    else:
        model = torch_bn_model(base)
        run = lambda: higher_backward(model, batch, s)  # noqa: E731
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # reset the peak resident set size (Linux >= 4.0)
    before = _rss_mb()
    run()
    return _peak_rss_mb() - before


def memory_rows(args, have_l2l: bool) -> list[dict]:
    rows = []
    systems = ["fewshot"] + (["learn2learn"] if have_l2l else []) + ["higher"]
    for s in MEMORY_SETTINGS:
        mb = {}
        for system in systems:
            out = subprocess.run([sys.executable, __file__, "--memory-probe", system, s.name,
                                  "--meta-batch", str(args.meta_batch)], capture_output=True, text=True, check=True,
                                 env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                      "PYTHONPATH": str(ROOT)})  # this checkout's fewshot
            mb[system] = float(out.stdout.strip().splitlines()[-1])
        rows.append({"setting": s.name, "label": f"peak memory, {s.steps} steps, 2nd order", "peak_mb": mb,
                     "ratio_vs_fewshot": {n: mb[n] / mb["fewshot"] for n in mb if n != "fewshot"}})
        print(f"{rows[-1]['label']:<32}" + "".join(f"{n} {v:.0f} MB  " for n, v in mb.items()), flush=True)
    return rows


def markdown(result: dict) -> str:
    peers = [p for p in ("learn2learn", "higher") if p in result["time"][0]["median_s"]]
    head = "| setting | fewshot | " + " | ".join(peers) + " | " + " | ".join(f"{p} / fewshot" for p in peers) + " |"
    lines = [f"# bench/peers.py: fewshot vs {', '.join(peers)}", "",
             f"{result['machine']}; torch {result['torch']}, 1 thread; Conv4-64, 28x28, 5-way 1-shot, "
             f"meta-batch {result['meta_batch']}; medians of {result['rounds']} interleaved rounds. "
             "Ratios > 1: fewshot is faster (or smaller).", "", head, "|" + "---|" * (2 + 2 * len(peers))]
    for r in result["time"]:
        m = r["median_s"]
        lines.append(f"| {r['label']} | {m['fewshot']:.3f} s | " + " | ".join(f"{m[p]:.3f} s" for p in peers) + " | "
                     + " | ".join(f"{r['ratio_vs_fewshot'][p]:.2f}x" for p in peers) + " |")
    for r in result["memory"]:
        m = r["peak_mb"]
        lines.append(f"| {r['label']} | {m['fewshot']:.0f} MB | " + " | ".join(f"{m[p]:.0f} MB" for p in peers) + " | "
                     + " | ".join(f"{r['ratio_vs_fewshot'][p]:.2f}x" for p in peers) + " |")
    e = result["evaluation"]
    lines.append(f"| evaluation, {e['episodes']} 5w1s episodes (adapt+predict) | {e['median_s']['fewshot']:.2f} s | "
                 + " | ".join(f"{e['median_s'][p]:.2f} s" if p in e["median_s"] else "–" for p in peers) + " | "
                 + " | ".join(f"{e['ratio_vs_fewshot'][p]:.2f}x" if p in e["ratio_vs_fewshot"] else "–" for p in peers)
                 + " |")
    lines += ["", "Largest meta-gradient difference from fewshot (same weights and tasks, float32): "
              + "; ".join(f"{r['setting']}: " + ", ".join(f"{p} {g:.1e}" for p, g in r["max_grad_gap"].items())
                          for r in result["time"]), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per setting (after one warm-up)")
    p.add_argument("--meta-batch", type=int, default=8)
    p.add_argument("--eval-episodes", type=int, default=600)
    p.add_argument("--quick", action="store_true", help="fewer evaluation episodes and no memory rows")
    p.add_argument("--out", default=str(RESULTS), help="folder for peers.json and peers.md")
    p.add_argument("--memory-only", action="store_true", help="re-measure the memory rows of an existing peers.json")
    p.add_argument("--memory-probe", nargs=2, metavar=("SYSTEM", "SETTING"), help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.memory_probe:
        print(memory_probe(*args.memory_probe, meta_batch=args.meta_batch))
        return
    try:
        import learn2learn  # noqa: F401
        have_l2l = True
    except ImportError:
        have_l2l = False
        print("learn2learn is not installed (bash bench/install_learn2learn.sh): comparing with higher only")
    out = Path(args.out)
    if args.memory_only:
        result = json.loads((out / "peers.json").read_text(encoding="utf-8"))
        result["memory"] = memory_rows(args, have_l2l)
        (out / "peers.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        (out / "peers.md").write_text(markdown(result), encoding="utf-8")
        return
    if args.quick:
        args.eval_episodes = min(args.eval_episodes, 100)
    result = {"machine": f"{platform.processor() or platform.machine()} ({platform.node() and 'shared VM'})",
              "torch": torch.__version__, "meta_batch": args.meta_batch, "rounds": args.rounds,
              "time": time_settings(args, have_l2l), "evaluation": time_evaluation(args, have_l2l),
              "memory": [] if args.quick else memory_rows(args, have_l2l)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "peers.md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {out / 'peers.json'} and {out / 'peers.md'}")


if __name__ == "__main__":
    main()

"""fewshot against learn2learn and higher on the same work: meta-training step time, peak memory and
evaluation time, with the meta-gradients checked equal.

Setting (issue 16): Conv4-64 on Omniglot-shaped 28x28 inputs (synthetic data: timing only), 5-way
1-shot, meta-batch 8, one Adam step per iteration, one torch thread.  The peers run the same weights
with ``torch.nn.BatchNorm2d`` (as their users do); fewshot runs its own ``Conv4``
(``StepBatchNorm2d``). Systems are interleaved round by round so that load on a shared machine hits
them alike; the table reports medians and the ratio peer / fewshot (> 1: fewshot is faster).  Peak
memory is measured in a fresh process per system and setting: the growth of the peak resident set
during one meta-gradient. Every system back-propagates task by task, as its users' training loops
do: the peers' documented loops, and ``learner.meta_backward`` for fewshot (what ``fewshot train``
calls).  (Until bench/results of 2026-11-30 the fewshot rows used
``meta_loss(batch).loss.backward()``, which holds all 8 tasks' graphs at once: that, not the graph
itself, was the "19 MB per inner step": per task and step both systems save the same 1.7 MB of
tensors, see bench/memory_steps.py.)

Usage::

    bash bench/install_learn2learn.sh          # once: the peer (higher comes with .[dev])
    python bench/peers.py  # prints the table, writes bench/results/peers.{json,md}
    python bench/peers.py --rounds 3 --quick   # a fast smoke run
    # (re-)measure the whole-machine row (issue 24) into peers.json/md
    python bench/peers.py --machine-only

The whole-machine row (issue 24) times the real ``fewshot train omniglot-5w1s-maml --nproc auto``
command (validation off; iterations per second from per-iteration timestamps, start-up excluded)
against learn2learn's examples/vision/maml_omniglot.py step at torch's default threads, in
interleaved rounds, in fp32 and under bf16 autocast (fewshot's bf16 where this checkout's ``fewshot
train`` has ``--precision``). It needs the Omniglot store (``--data-root`` or ``FEWSHOT_DATA``).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
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
from fewshot.runtime import allocator

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
# --device (the GPU table of bench/gpu_check.sh): models and tasks live here
DEVICE = torch.device("cpu")
# the same value for every system; every system adapts every parameter (adapt_norm=True)
INNER_LR = 0.4


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


def batch_for(s: Setting, meta_batch: int, ways: int = 5, shots: int = 1,
              seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(meta_batch, ways * shots, 1, 28, 28, generator=g)
    qx = torch.rand(meta_batch, ways * s.queries, 1, 28, 28, generator=g)
    sy = torch.arange(ways).repeat_interleave(shots).expand(meta_batch, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(s.queries).expand(meta_batch, -1).contiguous()
    return TaskBatch(sx, sy, qx, qy, ways).to(DEVICE)


def fewshot_model() -> nn.Module:
    torch.manual_seed(0)  # benchmark-only model init
    return Conv4(1, 5, hidden=64, image_size=28, pool=False).to(DEVICE)


def torch_bn_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every one-slot ``StepBatchNorm2d`` replaced by ``nn.BatchNorm2d``
    (same weights and statistics): the model a learn2learn or higher user runs."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, StepBatchNorm):
                bn = nn.BatchNorm2d(child.num_features, eps=child.eps,
                                    momentum=child.momentum).to(DEVICE)
                with torch.no_grad():
                    bn.weight.copy_(child.weight[0])
                    bn.bias.copy_(child.bias[0])
                    bn.running_mean.copy_(child.running_mean[0])
                    bn.running_var.copy_(child.running_var[0])
                setattr(parent, name, bn)
    return model


# ----------------------------------------------------------------------------- one meta-gradient
# each
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
    # first order in higher
    detach = (lambda grads: [g.detach() for g in grads]) if s.first_order else None
    for i in range(len(batch)):
        with higher.innerloop_ctx(model, inner, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(s.steps):
                diffopt.step(F.cross_entropy(fmodel(batch.support_x[i]), batch.support_y[i]),
                             grad_callback=detach)
            (F.cross_entropy(fmodel(batch.query_x[i]), batch.query_y[i]) / len(batch)).backward()


def make_systems(s: Setting, have_l2l: bool) -> dict[str,
                                                     tuple[nn.Module, Callable[[TaskBatch], None]]]:
    """name -> (module holding the meta-parameters, function doing one meta-gradient + Adam
    step)."""
    base = fewshot_model()
    systems: dict[str, tuple[nn.Module, Callable[[TaskBatch], None]]] = {}
    ours = MAML(copy.deepcopy(base),
                MAMLConfig(inner_steps=s.steps, inner_lr=INNER_LR, first_order=s.first_order,
                           adapt_norm=True))
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
    """Max |meta-gradient difference| between fewshot and each peer on the same weights and
    tasks."""
    base = fewshot_model()
    ours = MAML(copy.deepcopy(base),
                MAMLConfig(inner_steps=s.steps, inner_lr=INNER_LR, first_order=s.first_order,
                           adapt_norm=True))
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
        gaps[name] = max((a.flatten() - p.grad.flatten()).abs().max().item()
                         for a, p in zip(ref, module.parameters()))
    return gaps


# ----------------------------------------------------------------------------- timing
def _sync() -> None:
    """Wait for the GPU's queued work, so a timer brackets the computation, not its launch."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


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
                _sync()
                t0 = time.perf_counter()
                step(batch)
                _sync()
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(v) for name, v in times.items()}
        rows.append({"setting": s.name, "label": s.label(), "median_s": med,
                     "ratio_vs_fewshot": {n: med[n] / med["fewshot"] for n in med if n
                                          != "fewshot"},
                     "max_grad_gap": gradient_gap(s, batch, have_l2l)})
        print(f"{s.label():<32}" + "".join(f"{n} {t:.3f}s  " for n, t in med.items()), flush=True)
    return rows


def time_evaluation(args, have_l2l: bool) -> dict:
    """Adapt + predict on ``args.eval_episodes`` 5-way 1-shot episodes (1 query per class, 3 steps),
    the shipped Omniglot models' evaluation shape."""
    s = Setting("eval", 1, 3, True)
    batch = batch_for(s, args.eval_episodes, seed=1)
    base = fewshot_model()
    ours = MAML(copy.deepcopy(base),
                MAMLConfig(inner_steps=3, inner_lr=INNER_LR, adapt_norm=True)).eval()

    def run_ours() -> None:
        for start in range(0, len(batch), 25):
            sl = slice(start, start + 25)
            ours.evaluate(
                TaskBatch(batch.support_x[sl], batch.support_y[sl], batch.query_x[sl],
                          batch.query_y[sl], 5))

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
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
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
    high-water mark is reset just before (``/proc/self/clear_refs``), so import-time peaks don't
    count."""
    s = next(x for x in MEMORY_SETTINGS + TIME_SETTINGS if x.name == setting)
    batch = batch_for(s, meta_batch)
    base = fewshot_model()
    if system == "fewshot":
        learner = MAML(base,
                       MAMLConfig(inner_steps=s.steps, inner_lr=INNER_LR, first_order=s.first_order,
                                  adapt_norm=True))
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
                                  "--meta-batch", str(args.meta_batch)], capture_output=True,
                                 text=True, check=True,
                                 env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                                      "PATH": "/usr/bin:/bin",
                                      "PYTHONPATH": str(ROOT)})  # this checkout's fewshot
            mb[system] = float(out.stdout.strip().splitlines()[-1])
        rows.append(
            {"setting": s.name, "label": f"peak memory, {s.steps} steps, 2nd order", "peak_mb": mb,
                     "ratio_vs_fewshot": {n: mb[n] / mb["fewshot"] for n in mb if n != "fewshot"}})
        print(f"{rows[-1]['label']:<32}" + "".join(f"{n} {v:.0f} MB  " for n, v in mb.items()),
              flush=True)
    return rows


# ----------------------------------------------------------------------------- whole machine (issue
# 24)
# What a user would compare: `fewshot train omniglot-5w1s-maml` at its recommended CPU settings
# against
# learn2learn's documented Omniglot MAML recipe, each on every core at its own default threads.
MACHINE_PRESET = "omniglot-5w1s-maml"
FEWSHOT_CPU_FLAGS = ["--nproc", "auto"]  # the recommended CPU settings (docs/scale-out.md)
# Loaded by every Python process of a timed `fewshot train` (through PYTHONPATH): stamps each call
# of the
# task source's ``sample`` (once per iteration) and rank 0 writes them at exit (atexit, or the
# os._exit by
# which a rank leaves: fewshot.runtime.distributed.leave), so the rate excludes process start-up and
# data loading
# without changing the command that is timed (as bench/scaling.py).
STAMPS_HOOK = """
import atexit, json, os, time
import episodes
_times = []
for _cls in (episodes.EpisodeSampler, episodes.ShardedSource):
    def _sample(self, *a, _original=_cls.sample, **k):
        _times.append(time.perf_counter())
        return _original(self, *a, **k)
    _cls.sample = _sample
def _write():
    if _times and os.environ.get("RANK", "0") == "0":
        with open(os.environ["FEWSHOT_BENCH_STAMPS"], "w") as f:
            json.dump(_times, f)
atexit.register(_write)
def _exit(status, _original=os._exit):
    _write()
    _original(status)
os._exit = _exit
"""


def _rate(stamps: list[float], warmup: int) -> float:
    """Iterations per second between the start of iteration ``warmup`` and the start of the last
    one."""
    return (len(stamps) - 1 - warmup) / (stamps[-1] - stamps[warmup])


def fewshot_has_precision() -> bool:
    """Whether this checkout's ``fewshot train`` takes ``--precision`` (issue 24, point 1)."""
    out = subprocess.run([sys.executable, "-m", "fewshot", "train", "--help"], capture_output=True,
                         text=True,
                         env=_machine_env(), check=True)
    return "--precision" in out.stdout


# glibc malloc thresholds raised by hand (bench/NOTES.md, "glibc's allocator"): activations of a few
# MB
# then stay on the heap instead of being returned to the kernel and page-faulted back every
# iteration.
# The values `fewshot train` sets itself (fewshot/runtime/allocator.py), so "tuned" changes only
# learn2learn.
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(allocator.MMAP_THRESHOLD),
                "MALLOC_TRIM_THRESHOLD_": str(allocator.TRIM_THRESHOLD)}
MALLOC_STATES = ("default", "tuned")


def _machine_env(malloc: str = "default", **extra: str) -> dict[str, str]:
    """This environment minus any thread, torchrun or malloc setting, so every system takes its own
    defaults; ``malloc="tuned"`` adds ``MALLOC_TUNED`` (for every system alike)."""
    drop = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
            "MASTER_PORT",
            allocator.ENV_SWITCH, *allocator.USER_SETTINGS}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PYTHONPATH": str(ROOT), **(MALLOC_TUNED if malloc == "tuned" else {}), **extra}


def fewshot_machine_rate(args, precision: str, work: Path, queries: int = 1,
                         iterations: int | None = None,
                         malloc: str = "default") -> float:
    """Iterations per second of the real `fewshot train` command (validation and checkpoints off),
    with ``queries`` query images per class (the preset's 1, or more through ``--set
    data.queries``)."""
    hook = work / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(STAMPS_HOOK, encoding="utf-8")
    stamps, out = work / "stamps.json", work / f"run-{time.monotonic_ns()}"
    total = (iterations or args.machine_iterations) + args.machine_warmup + 1
    cmd = [sys.executable, "-m", "fewshot", "train", MACHINE_PRESET, "--out", str(out), "--quiet",
           "--iterations", str(total), "--set", "val_every=0", "--set", f"checkpoint_every={total}",
           "--device", "cpu", *FEWSHOT_CPU_FLAGS,
           *(["--precision", precision] if precision != "fp32" else [])]
    if args.data_root:
        cmd += ["--set", f"data.root={args.data_root}"]
    if queries != 1:
        cmd += ["--set", f"data.queries={queries}"]
    env = _machine_env(malloc, PYTHONPATH=f"{hook}{os.pathsep}{ROOT}",
                       FEWSHOT_BENCH_STAMPS=str(stamps))
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return _rate(json.loads(stamps.read_text(encoding="utf-8")), args.machine_warmup)


def l2l_recipe_rate(iterations: int, warmup: int, precision: str, queries: int = 1) -> float:
    """learn2learn's examples/vision/maml_omniglot.py training step (OmniglotCNN, 5-way 1-shot with
    one query per class, meta-batch 32, 1 adaptation step at fast_lr 0.5, second order, Adam 0.003,
    one backward per task, gradients scaled by 1/32), at torch's default threads, fed from a pool of
    in-memory task tensors (no data loading at all: generous to it).  The example's per-iteration
    meta-validation is left out, as fewshot's validation is.  ``bf16``: the forward passes under
    ``torch.autocast("cpu", dtype=torch.bfloat16)``, the backward outside, as fewshot's bf16 does.
    ``queries`` > 1: that many query images per class instead of the example's one (its split keeps
    the first ``shots`` images of each class for adaptation)."""
    import contextlib

    import learn2learn as l2l

    torch.manual_seed(42)
    ways, shots, meta_batch = 5, 1, 32
    model = l2l.vision.models.OmniglotCNN(ways)
    maml = l2l.algorithms.MAML(model, lr=0.5, first_order=False)
    opt = torch.optim.Adam(maml.parameters(), 0.003)
    loss = nn.CrossEntropyLoss(reduction="mean")
    g = torch.Generator().manual_seed(0)
    per_class = shots + queries
    pool = [
        (torch.rand(per_class * ways, 1, 28, 28, generator=g),
         torch.arange(ways).repeat_interleave(per_class))
            for _ in range(64)]
    # queries=1: the example's every-other split
    first = torch.arange(per_class * ways) % per_class < shots
    adapt_idx, eval_idx = torch.nonzero(first).flatten(), torch.nonzero(~first).flatten()
    cast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16"
            else contextlib.nullcontext)
    stamps, k = [], 0
    for _ in range(iterations + warmup + 1):
        stamps.append(time.perf_counter())
        opt.zero_grad()
        for _task in range(meta_batch):
            data, labels = pool[k % len(pool)]
            k += 1
            learner = maml.clone()
            with cast():
                learner.adapt(loss(learner(data[adapt_idx]), labels[adapt_idx]))
                error = loss(learner(data[eval_idx]), labels[eval_idx])
            error.float().backward()
        for p in maml.parameters():
            p.grad.data.mul_(1.0 / meta_batch)
        opt.step()
    return _rate(stamps, warmup)


def _suffix(malloc: str) -> str:
    """How a row's key names its allocator state ("" for the defaults)."""
    return "" if malloc == "default" else f" {malloc}-malloc"


def _key(system: str, precision: str, malloc: str) -> str:
    return f"{system} {precision}{_suffix(malloc)}"


def machine_rows(args, have_l2l: bool, queries: int = 1) -> dict:
    """fewshot's command vs learn2learn's recipe, whole machine, interleaved rounds, fp32 and (where
    this checkout's `fewshot train` has it) bf16, at ``queries`` query images per class, with
    glibc's allocator at its defaults and (``--machine-malloc``) with its thresholds raised for both
    systems."""
    import tempfile

    iterations = args.machine_iterations if queries == 1 else args.machine_query_iterations
    precisions = ["fp32"] + (["bf16"] if args.machine_bf16 else [])
    mallocs = [m for m in str(args.machine_malloc).split(",") if m]
    bad = [m for m in mallocs if m not in MALLOC_STATES]
    if bad:
        raise SystemExit(f"--machine-malloc takes {', '.join(MALLOC_STATES)}, got {', '.join(bad)}")
    bf16_fewshot = "bf16" in precisions and fewshot_has_precision()
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.machine_rounds):
            for malloc in mallocs:
                for precision in precisions:
                    if precision == "fp32" or bf16_fewshot:
                        rate = fewshot_machine_rate(args, precision, Path(tmp), queries, iterations,
                                                    malloc)
                        rates.setdefault(_key("fewshot", precision, malloc), []).append(rate)
                    if have_l2l:
                        out = subprocess.run([sys.executable, __file__, "--l2l-recipe", precision,
                                              "--machine-iterations", str(iterations),
                                              "--machine-warmup",
                                              str(args.machine_warmup), "--l2l-queries",
                                              str(queries)],
                                             capture_output=True, text=True, check=True,
                                             env=_machine_env(malloc))
                        rates.setdefault(_key("learn2learn", precision, malloc), []).append(
                            float(out.stdout.split()[-1]))
            print(f"whole machine, {queries} queries, round {r + 1}: "
                  + "  ".join(f"{n} {v[-1]:.2f} it/s" for n, v in rates.items()), flush=True)
    med = {n: statistics.median(v) for n, v in rates.items()}
    ratios: dict[str, float] = {}
    for malloc in mallocs:
        suffix = _suffix(malloc)
        for p in precisions:
            f, l_ = med.get(_key("fewshot", p, malloc)), med.get(_key("learn2learn", p, malloc))
            if f is not None and l_ is not None:
                ratios[p + suffix] = f / l_
        f, l_ = med.get(_key("fewshot", "bf16", malloc)), med.get(
            _key("learn2learn", "fp32", malloc))
        if f is not None and l_ is not None:
            ratios["bf16 vs learn2learn fp32" + suffix] = f / l_
    return {"preset": MACHINE_PRESET, "fewshot_flags": FEWSHOT_CPU_FLAGS, "cores": os.cpu_count(),
            "queries": queries, "iterations": iterations, "warmup": args.machine_warmup,
            "rounds": args.machine_rounds,
            "malloc": mallocs, "malloc_tuned_env": MALLOC_TUNED, "fewshot_tunes_malloc": True,
            "its_per_s": rates, "median_its_per_s": med, "ratio_fewshot_vs_l2l": ratios,
            "bf16_skipped": ("fewshot train has no --precision in this checkout"
                             if "bf16" in precisions
                             and not bf16_fewshot else None), "note": args.machine_note}


def all_machine_rows(args, have_l2l: bool) -> list[dict]:
    """``machine_rows`` at each of ``--machine-queries``."""
    return [machine_rows(args, have_l2l, int(q)) for q in str(args.machine_queries).split(",")]


def machine_markdown(m: dict) -> list[str]:
    med, ratios = m["median_its_per_s"], m["ratio_fewshot_vs_l2l"]
    queries = m.get("queries", 1)
    shape = ("the preset's shape, 1 query per class" if queries == 1 else
             f"{queries} queries per class (`--set data.queries={queries}`; learn2learn's recipe "
             "with the same)")
    lines = [
        f"## Whole machine: `fewshot train {m['preset']} {' '.join(m['fewshot_flags'])}` vs "
        "learn2learn's "
        f"Omniglot MAML recipe, {shape}", "",
        f"{m['cores']} cores; iterations per second (higher is better), medians of "
        f"{m['rounds']} interleaved "
        f"rounds of {m['iterations']} timed iterations after {m['warmup']}; each system at "
        "its own default "
        "threads; validation off. learn2learn: examples/vision/maml_omniglot.py's step "
        "(OmniglotCNN, "
        "meta-batch 32, 1 step, 2nd order, one backward per task) on in-memory task tensors. "
        "Ratio > 1: fewshot is faster.", "",
        "| precision | fewshot it/s | learn2learn it/s | fewshot / learn2learn |",
        "|---|---|---|---|"]
    for malloc in m.get("malloc", ["default"]):
        suffix = _suffix(malloc)
        where = "" if len(m.get("malloc", ["default"])) == 1 else (
            (", as each starts (fewshot fixes glibc's thresholds itself)"
             if m.get("fewshot_tunes_malloc") else
             ", glibc malloc defaults") if malloc == "default"
             else ", malloc thresholds raised (both)")
        for p in ("fp32", "bf16"):
            f, l_ = med.get(_key("fewshot", p, malloc)), med.get(_key("learn2learn", p, malloc))
            if f is None and l_ is None:
                continue
            label = ("bf16 (autocast)" if p == "bf16" else p) + where
            lines.append(
                f"| {label} | {'–' if f is None else f'{f:.2f}'} | "
                f"{'–' if l_ is None else f'{l_:.2f}'} | "
                         + (f"{ratios[p + suffix]:.2f}x" if p + suffix in ratios else "–") + " |")
    for malloc in m.get("malloc", ["default"]):
        suffix = _suffix(malloc)
        key = "bf16 vs learn2learn fp32" + suffix
        if key in ratios:
            where = "" if malloc == "default" else " (malloc thresholds raised for both)"
            lines.append(f"\nfewshot bf16 against learn2learn fp32{where}: {ratios[key]:.2f}x.")
    if "tuned" in m.get("malloc", []):
        env = " ".join(f"{k}={v}" for k, v in m.get("malloc_tuned_env", MALLOC_TUNED).items())
        lines.append(f"\nRaised thresholds: `{env}` in both systems' environments (bench/NOTES.md, "
                     "\"glibc's allocator\").")
    if m.get("bf16_skipped"):
        lines.append(f"\nfewshot bf16 not measured: {m['bf16_skipped']}.")
    if m.get("note"):
        lines.append(f"\n{m['note']}")
    return lines


def markdown(result: dict) -> str:
    peers = [p for p in ("learn2learn", "higher") if p in result["time"][0]["median_s"]]
    head = "| setting | fewshot | " + " | ".join(peers) + " | " + " | ".join(f"{p} / fewshot"
                                                                             for p in peers) + " |"
    lines = [f"# bench/peers.py: fewshot vs {', '.join(peers)}", "",
             f"{result['machine']}; torch {result['torch']}, "
             f"{result.get('device', 'cpu, 1 thread')}; "
             "Conv4-64, 28x28, 5-way 1-shot, "
             f"meta-batch {result['meta_batch']}; medians of {result['rounds']} interleaved "
             "rounds. "
             "Ratios > 1: fewshot is faster (or smaller).", "", head,
             "|" + "---|" * (2 + 2 * len(peers))]
    for r in result["time"]:
        m = r["median_s"]
        lines.append(f"| {r['label']} | {m['fewshot']:.3f} s | "
                     + " | ".join(f"{m[p]:.3f} s" for p in peers) + " | "
                     + " | ".join(f"{r['ratio_vs_fewshot'][p]:.2f}x" for p in peers) + " |")
    for r in result["memory"]:
        m = r["peak_mb"]
        lines.append(f"| {r['label']} | {m['fewshot']:.0f} MB | "
                     + " | ".join(f"{m[p]:.0f} MB" for p in peers) + " | "
                     + " | ".join(f"{r['ratio_vs_fewshot'][p]:.2f}x" for p in peers) + " |")
    e = result["evaluation"]
    lines.append(
        f"| evaluation, {e['episodes']} 5w1s episodes (adapt+predict) | "
        f"{e['median_s']['fewshot']:.2f} s | "
                 + " | ".join(f"{e['median_s'][p]:.2f} s" if p in e["median_s"] else "–"
                              for p in peers) + " | "
                 + " | ".join(f"{e['ratio_vs_fewshot'][p]:.2f}x" if p in e["ratio_vs_fewshot"]
                              else "–" for p in peers)
                 + " |")
    lines += ["",
              "Largest meta-gradient difference from fewshot (same weights and tasks, float32): "
              + "; ".join(f"{r['setting']}: "
                          + ", ".join(f"{p} {g:.1e}" for p, g in r["max_grad_gap"].items())
                          for r in result["time"]), ""]
    rows = result.get("machine_rows")
    for m in ([rows] if isinstance(rows, dict) else rows or []):
        lines += machine_markdown(m) + [""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7,
                   help="timed rounds per setting (after one warm-up)")
    p.add_argument("--meta-batch", type=int, default=8)
    p.add_argument("--eval-episodes", type=int, default=600)
    p.add_argument("--quick", action="store_true",
                   help="fewer evaluation episodes and no memory rows")
    p.add_argument("--out", default=str(RESULTS), help="folder for peers.json and peers.md")
    p.add_argument("--memory-only", action="store_true",
                   help="re-measure the memory rows of an existing peers.json")
    p.add_argument("--memory-probe", nargs=2, metavar=("SYSTEM", "SETTING"), help=argparse.SUPPRESS)
    p.add_argument("--machine", action="store_true",
                   help="also measure the whole-machine row (every core)")
    p.add_argument("--machine-only", action="store_true",
                   help="(re-)measure only the whole-machine row of an existing peers.json")
    p.add_argument("--machine-rounds", type=int, default=5)
    p.add_argument("--machine-iterations", type=int, default=60,
                   help="timed iterations per round and system")
    p.add_argument("--machine-warmup", type=int, default=3)
    p.add_argument("--machine-queries", default="1,15",
                   help="comma-separated query counts per class of the whole-machine rows (default "
                        "1,15)")
    p.add_argument("--machine-query-iterations", type=int, default=15,
                   help="timed iterations per round and system of the rows with more than 1 query")
    p.add_argument("--l2l-queries", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--no-machine-bf16", dest="machine_bf16", action="store_false",
                   help="fp32 only (default: also bf16 autocast, fewshot's where `fewshot train "
                        "--precision` exists)")
    p.add_argument("--machine-malloc", default="default,tuned",
                   help="glibc allocator states of the whole-machine rows: default (each system as "
                        "it starts), "
                        "tuned (MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised for both); "
                        "comma-separated")
    p.add_argument("--machine-note", default="",
                   help="a sentence printed under the whole-machine table")
    p.add_argument("--data-root", default=os.environ.get("FEWSHOT_DATA"),
                   help="data root holding omniglot/omniglot-28.h5 for the whole-machine row "
                        "(default $FEWSHOT_DATA)")
    p.add_argument("--device", default="cpu",
                   help="cpu (default) or cuda[:N]: the timing and gradient rows on a "
                        "GPU (the memory rows, resident-set growth, are CPU-only and then skipped)")
    p.add_argument("--l2l-recipe", choices=["fp32", "bf16"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.l2l_recipe:  # a fresh process at torch's default threads
        print(
            l2l_recipe_rate(args.machine_iterations, args.machine_warmup, args.l2l_recipe,
                            args.l2l_queries))
        return
    torch.set_num_threads(1)
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.memory_probe:
        print(memory_probe(*args.memory_probe, meta_batch=args.meta_batch))
        return
    try:
        import learn2learn  # noqa: F401
        have_l2l = True
    except ImportError:
        have_l2l = False
        print(
            "learn2learn is not installed (bash bench/install_learn2learn.sh): comparing with "
            "higher only")
    out = Path(args.out)
    if args.machine_only or args.memory_only:  # re-measure one part of an existing peers.json
        result = json.loads((out / "peers.json").read_text(encoding="utf-8"))
        if args.machine_only:
            result["machine_rows"] = all_machine_rows(args, have_l2l)
        else:
            result["memory"] = memory_rows(args, have_l2l)
        (out / "peers.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        (out / "peers.md").write_text(markdown(result), encoding="utf-8")
        return
    if args.quick:
        args.eval_episodes = min(args.eval_episodes, 100)
    result = {
        "machine": f"{platform.processor() or platform.machine()} "
                   f"({platform.node() and 'shared VM'})",
        "torch": torch.__version__, "meta_batch": args.meta_batch, "rounds": args.rounds,
        "time": time_settings(args, have_l2l), "evaluation": time_evaluation(args, have_l2l),
        "device": ("cpu, 1 thread" if DEVICE.type == "cpu"
                         else torch.cuda.get_device_name(DEVICE)),
        "memory": [] if args.quick or DEVICE.type != "cpu" else memory_rows(args, have_l2l)}
    if args.machine:
        result["machine_rows"] = all_machine_rows(args, have_l2l)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "peers.md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {out / 'peers.json'} and {out / 'peers.md'}")


if __name__ == "__main__":
    main()

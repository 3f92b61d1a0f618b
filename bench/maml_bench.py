"""Per-iteration time of MAML meta-training: fewshot (loop vs vmap, first vs second order) and, if
it is installed, learn2learn's MAML on the same model and data.

Setting: Omniglot 5-way 1-shot, Conv4-64 (28x28, synthetic data: timing only), meta-batch 32,
1 inner step, one Adam step per iteration.  learn2learn is optional (bench/install_learn2learn.sh
puts it in a separate venv); the library never imports it.

Usage::

    .venv/bin/python bench/maml_bench.py --iterations 3            # fewshot only
    /tmp/l2l-venv/bin/python bench/maml_bench.py --iterations 3    # + learn2learn, same process
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from episodes import TaskBatch
from fewshot import MAML, MLP, Conv4, MAMLConfig


def synthetic_batch(meta_batch: int, ways: int, shots: int, queries: int, size: int, device: str,
                    regression: bool = False) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    if regression:  # sinusoid-shaped: x, y [B, K, 1]
        x = torch.rand(meta_batch, shots + queries, 1, generator=g) * 10 - 5
        y = torch.sin(x)
        return TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], None).to(device)
    sx = torch.rand(meta_batch, ways * shots, 1, size, size, generator=g)
    qx = torch.rand(meta_batch, ways * queries, 1, size, size, generator=g)
    sy = torch.arange(ways).repeat_interleave(shots).expand(meta_batch, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(queries).expand(meta_batch, -1).contiguous()
    return TaskBatch(sx, sy, qx, qy, ways).to(device)


def new_model(args) -> torch.nn.Module:
    torch.manual_seed(0)  # benchmark-only model init
    if args.backbone == "mlp":
        return MLP(1, 1).to(args.device)
    return Conv4(1, args.ways, hidden=args.hidden, image_size=args.size).to(args.device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_loop(step, args) -> tuple[float, float]:
    for _ in range(args.warmup):
        step()
    sync(args.device)
    times = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        step()
        sync(args.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def bench_fewshot(args, batch, batching: str, first_order: bool):
    learner = MAML(new_model(args), MAMLConfig(inner_steps=args.steps, inner_lr=args.inner_lr,
                                               first_order=first_order, task_batching=batching))
    opt = torch.optim.Adam(learner.parameters(), 1e-3)

    def step():
        out = learner.meta_loss(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return time_loop(step, args)


def bench_l2l(args, batch, first_order: bool):
    import learn2learn as l2l  # optional, benchmark only

    maml = l2l.algorithms.MAML(new_model(args), lr=args.inner_lr, first_order=first_order)
    loss_fn = F.mse_loss if batch.ways is None else F.cross_entropy
    opt = torch.optim.Adam(maml.parameters(), 1e-3)

    def step():
        opt.zero_grad()
        total = 0.0
        for i in range(len(batch)):
            learner = maml.clone()
            for _ in range(args.steps):
                learner.adapt(loss_fn(learner(batch.support_x[i]), batch.support_y[i]))
            total = total + loss_fn(learner(batch.query_x[i]), batch.query_y[i])
        (total / len(batch)).backward()
        opt.step()
    return time_loop(step, args)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--meta-batch", type=int, default=32)
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--queries", type=int, default=15, help="query examples per class")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--inner-lr", type=float, default=0.4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--backbone", choices=("conv4", "mlp"), default="conv4",
                   help="mlp: sinusoid MLP 1-40-40-1 (use e.g. --shots 5 --queries 10 --meta-batch "
                        "25 --inner-lr 0.01)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0: torch default)")
    p.add_argument("--only", default="", help="comma list of runs, e.g. 'fewshot-loop-2nd,l2l-2nd'")
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    regression = args.backbone == "mlp"
    if regression:
        args.ways = 1  # K points per task (shots/queries are totals, not per class)
    batch = synthetic_batch(args.meta_batch, args.ways, args.shots, args.queries, args.size,
                            args.device, regression)
    runs = {}
    for order, first in (("2nd", False), ("1st", True)):
        for batching in ("loop", "vmap"):
            runs[f"fewshot-{batching}-{order}"] = lambda b=batching, f=first: bench_fewshot(args,
                                                                                            batch,
                                                                                            b, f)
        runs[f"l2l-{order}"] = lambda f=first: bench_l2l(args, batch, f)
    wanted = [r for r in args.only.split(",") if r] or list(runs)
    try:
        import learn2learn  # noqa: F401
        have_l2l = True
    except Exception:  # not installed (or broken): skip its rows
        have_l2l = False
    what = ("sinusoid MLP 1-40-40-1, " if regression else
            f"{args.ways}-way {args.shots}-shot, {args.queries} queries/class, Conv4-{args.hidden} "
            f"{args.size}x{args.size}, ")
    print(f"# {what}"
          f"meta-batch {args.meta_batch}, {args.steps} inner step(s); device {args.device}, torch "
          f"{torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"{'run':<22}{'median s/it':>12}{'min s/it':>10}")
    results = {}
    for name in wanted:
        if name.startswith("l2l") and not have_l2l:
            print(f"{name:<22}{'learn2learn not installed (bench/install_learn2learn.sh)':>40}")
            continue
        med, best = runs[name]()
        results[name] = {"median_s": med, "min_s": best}
        print(f"{name:<22}{med:>12.3f}{best:>10.3f}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()

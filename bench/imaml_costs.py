"""iMAML at the Omniglot 5-way 1-shot shape (Conv4-64, 28x28, 5 support + 5 query images per task):
which Hessian-vector product the CG solve should use, and the cost of a meta-training iteration
beside MAML's.

Interleaved rounds, one thread, CPU seconds (``time.process_time``), random inputs of the real shape
(the cost depends on shapes only); the machine is shared, so read the ratios, not the seconds.

Usage: ``python bench/imaml_costs.py [--rounds 5] [--meta-batch 4]``; results in
bench/results/imaml_costs.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp, vjp

from episodes import TaskBatch
from fewshot.config import get_preset
from fewshot.training.build import build_learner_from_config

CG_STEPS = 5


def _batch(b: int, g: torch.Generator) -> TaskBatch:
    x = lambda n: torch.rand(b, n, 1, 28, 28, generator=g)  # noqa: E731
    y = torch.arange(5).expand(b, -1).clone()
    return TaskBatch(x(5), y, x(5), y.clone(), 5)


def hvp_methods(model: torch.nn.Module, sx: torch.Tensor, sy: torch.Tensor) -> dict[str,
                                                                                    Callable[[],
                                                                                             None]]:
    """One task's CG_STEPS support-loss HVPs (plus the set-up each needs), three ways."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    v = {k: torch.randn_like(p) for k, p in params.items()}

    def loss(p):
        return F.cross_entropy(functional_call(model, ({**buffers, **p},), (sx,)), sy)

    def double_backward() -> None:  # what fewshot.IMAML runs on the per-task loop
        leaf = {k: p.clone().requires_grad_() for k, p in params.items()}
        gs = torch.autograd.grad(loss(leaf), list(leaf.values()), create_graph=True)
        for _ in range(CG_STEPS):
            torch.autograd.grad(gs, list(leaf.values()), list(v.values()), retain_graph=True)

    # torch.func.jvp of grad: forward + backward again at every product
    def forward_over_reverse() -> None:
        for _ in range(CG_STEPS):
            jvp(grad(loss), (params,), (v,))

    def func_vjp() -> None:  # torch.func.vjp of grad, linearised once (what IMAML runs under vmap)
        _, fn = vjp(grad(loss), params)
        for _ in range(CG_STEPS):
            fn(v)

    return {"double_backward": double_backward, "jvp_of_grad": forward_over_reverse,
            "vjp_of_grad": func_vjp}


def _timed(fns: dict[str, Callable[[], None]], rounds: int, per_round: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.process_time()
            for _ in range(per_round):
                fn()
            times[name].append((time.process_time() - t0) / per_round)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=2)
    p.add_argument("--meta-batch", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    batch = _batch(args.meta_batch, g)

    maml_cfg = get_preset("omniglot-5w1s-maml")
    model = build_learner_from_config(maml_cfg).model.train()
    hvp = _timed(hvp_methods(model, batch.support_x[0], batch.support_y[0]), args.rounds,
                 args.per_round)

    setups = {"maml (1 step)": ("omniglot-5w1s-maml", {}),
              "imaml (16 steps, 5 CG)": ("omniglot-5w1s-imaml", {}),
              "imaml (16 steps, 5 CG, loop)": ("omniglot-5w1s-imaml", {"task_batching": "loop"}),
              "imaml (1 step, 5 CG)": ("omniglot-5w1s-imaml", {"inner_steps": 1, "eval_steps": 1}),
              "foimaml (16 steps, no CG)": ("omniglot-5w1s-imaml", {"first_order": True}),
              "maml (16 steps)": ("omniglot-5w1s-maml", {"inner_steps": 16, "inner_lr": 0.1})}
    learners = {}
    for label, (preset, extra) in setups.items():
        cfg = get_preset(preset)
        for k, val in {**extra, "cg_tol": 0.0}.items():
            if hasattr(cfg.learner.config, k):
                setattr(cfg.learner.config, k, val)
        learners[label] = build_learner_from_config(cfg).train()

    def step(label: str) -> Callable[[], None]:
        def run() -> None:
            learners[label].zero_grad()
            learners[label].meta_backward(batch)
        return run

    its = _timed({label: step(label) for label in setups}, args.rounds, args.per_round)
    base = its["maml (1 step)"]
    paths = {
        label: learner.task_batching_for("cpu",
                                         batch.support_x[0].numel() + batch.query_x[0].numel())
             for label, learner in learners.items()}
    print(f"HVP x{CG_STEPS} per task (CPU-s): " + ", ".join(f"{k} {t:.4f}" for k, t in hvp.items()))
    for label, t in its.items():
        print(f"{label:<30} {paths[label]:<5} {t:7.3f} CPU-s/it ({args.meta_batch} tasks)  "
              f"x{t / base:5.2f} of MAML 1 step")
    print(json.dumps({"hvp_cpu_s": hvp, "iteration_cpu_s": its, "meta_batch": args.meta_batch,
                      "task_batching": paths}, indent=2))


if __name__ == "__main__":
    main()

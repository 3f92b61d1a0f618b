"""CPU seconds per meta-training iteration of each shipped Omniglot 5-way 1-shot model's
configuration, measured side by side (interleaved rounds, one thread, real episodes): what "equal
CPU time" between learners means in iterations.

Usage: ``FEWSHOT_DATA=<root with the Omniglot store> python bench/learner_costs.py [--rounds 5]``

``--presets A B ...`` times training presets instead (their full shape: meta-batch, queries,
backbone), each with its cost relative to the first, e.g. ``--presets omniglot-5w1s-maml
omniglot-5w1s-anil``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fewshot.config import config_from_dict, get_preset
from fewshot.meta_optimizer import build_meta_optimizer
from fewshot.pretrained import show
from fewshot.training.build import build_learner_from_config, build_train_source

MODELS = ["omniglot-5w1s-maml", "omniglot-5w1s-metasgd", "omniglot-5w1s-mtnet",
          "omniglot-5w1s-lstm-meta"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=3, help="iterations timed per model per round")
    p.add_argument("--presets", nargs="+",
                   help="time these training presets instead of the shipped models")
    args = p.parse_args()
    torch.set_num_threads(1)
    names = args.presets or MODELS
    runs = {}
    for name in names:
        cfg = get_preset(name) if args.presets else config_from_dict(show(name)["config"],
                                                                     where=name)
        learner = build_learner_from_config(cfg).train()
        opt, _ = build_meta_optimizer(learner.parameters(), cfg.optim, cfg.iterations)
        source = build_train_source(cfg)
        runs[name] = (learner, opt, source, cfg)

    def step(name: str) -> None:
        learner, opt, source, cfg = runs[name]
        opt.zero_grad()
        learner.meta_backward(source.sample(cfg.meta_batch))
        opt.step()

    for name in names:  # warm-up
        step(name)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            t0 = time.process_time()
            for _ in range(args.per_round):
                step(name)
            times[name].append((time.process_time() - t0) / args.per_round)
    if args.presets:
        report_presets(names, times, runs)
        return
    result = {}
    for name in MODELS:
        m = show(name)
        per_it = statistics.median(times[name])
        its = m["trained_iterations"]
        result[name] = {"cpu_s_per_iteration": per_it, "trained_iterations": its,
                        "training_cpu_min_at_this_speed": per_it * its / 60,
                        "meta_batch": runs[name][3].meta_batch, "accuracy": m["mean"],
                        "ci95": m["ci95"]}
        print(
            f"{name:<26} {per_it:6.3f} CPU-s/it x {its:5d} its = {per_it * its / 60:5.1f} CPU-min  "
            " "
            f"test {100 * m['mean']:.2f} ± {100 * m['ci95']:.2f}")
    print(json.dumps(result, indent=2))


def report_presets(names: list[str], times: dict[str, list[float]], runs: dict) -> None:
    """Median CPU-s per iteration of each preset, and its ratio to the first preset's (per round,
    then median)."""
    result = {}
    for name in names:
        ratios = [t / r for t, r in zip(times[name], times[names[0]])]
        cfg = runs[name][3]
        result[name] = {"cpu_s_per_iteration": statistics.median(times[name]),
                        "rounds": times[name],
                        f"ratio_to_{names[0]}": statistics.median(ratios),
                        "meta_batch": cfg.meta_batch,
                        "inner_steps": cfg.learner.config.inner_steps}
        print(
            f"{name:<26} {statistics.median(times[name]):6.3f} CPU-s/it  "
            f"x{statistics.median(ratios):.3f} "
            f"of {names[0]} (per-round ratios {', '.join(f'{r:.3f}' for r in ratios)})")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Time per meta-training iteration of each preset (sample + meta_loss + backward + Adam step).

Image datasets use a synthetic ClassSplit of the preset's shape (timing does not depend on pixel
values; mini-ImageNet images are not available offline).  Usage::

    python bench/train_bench.py                      # every preset, 3 timed iterations each
    python bench/train_bench.py --presets omniglot-5w1s-maml sinusoid-maml \
        --iterations 5 --device cpu
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from episodes import ClassSplit, EpisodeSampler
from fewshot.config import get_preset, list_presets
from fewshot.training.build import (
    build_learner_from_config,
    build_optimizer,
    build_train_source,
    resolve_device,
)


def synthetic_split(channels: int, size: int, classes: int = 100,
                    per_class: int = 20) -> ClassSplit:
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (classes * per_class, channels, size, size), dtype=torch.uint8,
                         generator=g)
    offsets = torch.arange(0, classes * per_class + 1, per_class)
    return ClassSplit(data, offsets, [f"c{i}" for i in range(classes)], name="synthetic")


def time_preset(name: str, iterations: int, warmup: int, device: torch.device) -> dict:
    cfg = get_preset(name)
    learner = build_learner_from_config(cfg, device)
    if cfg.data.is_regression:
        source = build_train_source(cfg, device)
    else:
        channels = 3 if cfg.data.dataset == "mini-imagenet" else 1
        per_class = max(20, cfg.data.shots + cfg.data.queries)
        split = synthetic_split(channels, cfg.data.size, classes=max(100, cfg.data.ways),
                                per_class=per_class)
        source = EpisodeSampler(split, cfg.data.ways, cfg.data.shots, cfg.data.queries, seed=0,
                                device=device)
    opt, sched = build_optimizer(learner, cfg)
    times = []
    for i in range(warmup + iterations):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        batch = source.sample(cfg.meta_batch)
        out = learner.meta_loss(batch, epoch=0)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    per_it = sum(times) / len(times)
    return {"preset": name, "seconds_per_iteration": per_it, "meta_batch": cfg.meta_batch,
            "inner_steps": cfg.learner.config.inner_steps, "preset_iterations": cfg.iterations,
            "hours_for_preset": per_it * cfg.iterations / 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=None)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = []
    for name in args.presets or list_presets():
        row = time_preset(name, args.iterations, args.warmup, device)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"{name:32s} {row['seconds_per_iteration'] * 1000:9.1f} ms/it  (meta-batch "
                f"{row['meta_batch']}, "
                f"{row['inner_steps']} inner steps; "
                f"{row['preset_iterations']} its = {row['hours_for_preset']:.1f} h)",
                  flush=True)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()

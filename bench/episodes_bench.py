"""Episode sampling throughput: episodes/s and meta-batches/s for Omniglot 5w1s/5w5s/20w1s/20w5s.

Usage::

    fewshot prepare omniglot --source $FEWSHOT_DATA/omniglot --root /tmp/fewshot   # once
    python bench/episodes_bench.py --root /tmp/fewshot  # Vinyals train split, meta-batch 32
    python bench/episodes_bench.py --synthetic  # same shape (4112 classes x 20, 28x28), no data
    python bench/episodes_bench.py --root /tmp/fewshot --device cuda

The data root is ``--root``, else ``$FEWSHOT_DATA`` (like every command). Never run by the tests.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from episodes import ClassSplit, DataError, EpisodeSampler, load_split

CONFIGS = ((5, 1), (5, 5), (20, 1), (20, 5))


def synthetic_omniglot(seed: int = 0) -> ClassSplit:
    """Random uint8 data with the Vinyals train split's shape: 4112 classes x 20 images of
    1x28x28."""
    g = torch.Generator().manual_seed(seed)
    classes, per_class = 4112, 20
    data = torch.randint(0, 256, (classes * per_class, 1, 28, 28), dtype=torch.uint8, generator=g)
    return ClassSplit(data, torch.arange(classes + 1) * per_class,
                      [f"c{i}" for i in range(classes)], "synthetic")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(split: ClassSplit, ways: int, shots: int, queries: int, batch_size: int, seconds: float,
          device) -> tuple[float, int]:
    """Meta-batches per second of ``EpisodeSampler.sample(batch_size)`` (after a warm-up), and
    batches run."""
    sampler = EpisodeSampler(split, ways, shots, queries, seed=0, device=device)
    dev = sampler.device
    for _ in range(3):
        sampler.sample(batch_size)
    sync(dev)
    n, start = 0, time.perf_counter()
    while True:
        sampler.sample(batch_size)
        n += 1
        if n % 5 == 0:
            sync(dev)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return n / elapsed, n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=None,
                   help="data root with a prepared Omniglot store (default: $FEWSHOT_DATA)")
    p.add_argument("--synthetic", action="store_true",
                   help="random data of the same shape instead of Omniglot")
    p.add_argument("--device", default=None,
                   help="build episodes on this device (e.g. cuda); default cpu")
    p.add_argument("--batch-size", type=int, default=32, help="tasks per meta-batch (default 32)")
    p.add_argument("--queries", type=int, default=None,
                   help="queries per class (default: 15 for 5-way, 5 for 20-way)")
    p.add_argument("--seconds", type=float, default=2.0, help="time per configuration (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        t0 = time.perf_counter()
        split = synthetic_omniglot() if args.synthetic else load_split("omniglot", "train",
                                                                       root=args.root)
        load_s = time.perf_counter() - t0
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = torch.device(args.device) if args.device else torch.device("cpu")
    print(
        f"split {split.name or 'omniglot/train'}: {split.num_classes} classes, "
        f"{split.data.shape[0]} images "
        f"{tuple(split.data.shape[1:])} (loaded in {load_s:.2f}s); device {device}; "
        f"meta-batch {args.batch_size}; torch {torch.__version__}, {torch.get_num_threads()} "
        "threads"
    )
    print(
        f"{'config':>12} {'queries':>7} {'meta-batches/s':>15} {'episodes/s':>11} "
        f"{'ms/meta-batch':>14}")
    for ways, shots in CONFIGS:
        queries = args.queries if args.queries is not None else (15 if ways == 5 else 5)
        rate, _ = bench(split, ways, shots, queries, args.batch_size, args.seconds, device)
        print(
            f"{f'{ways}w{shots}s':>12} {queries:>7} {rate:>15.1f} {rate * args.batch_size:>11.0f} "
            f"{1000 / rate:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

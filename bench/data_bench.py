"""Data preparation and loading times: ``fewshot prepare`` per dataset, then ``load_split`` per
split.

Usage::

    python bench/data_bench.py --data $FEWSHOT_DATA                  # builds stores in a temp root
    python bench/data_bench.py --data $FEWSHOT_DATA --size 84 --repeat 3

Never run by the tests (timings live here, not in assertions).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from episodes import DATASETS, load_split
from fewshot.cli import main as cli


def _time(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def run(data: Path, size: int, repeat: int, datasets: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="fewshot-bench-") as tmp:
        for name in datasets:
            argv = ["prepare", name, "--source", str(data / name), "--root", tmp, "--size",
                    str(size), "--quiet",
                    "--force"]
            med, best = _time(lambda argv=argv: cli(argv), repeat)
            print(
                f"prepare {name:<14} size {size:>3}: median {med:6.2f} s  best {best:6.2f} s  "
                f"({repeat} runs)")
            for split in DATASETS[name].splits:
                med, best = _time(lambda name=name,
                                  split=split: load_split(name, split, tmp, size=size), repeat)
                s = load_split(name, split, tmp, size=size)
                print(
                    f"  load_split {split:<11} {s.num_classes:>5} classes {len(s.data):>6} images: "
                    "median "
                    f"{med * 1e3:7.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FEWSHOT_DATA"),
                        help="folder with the raw data sets")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    args = parser.parse_args()
    if not args.data:
        parser.error("pass --data DIR or set FEWSHOT_DATA")
    run(Path(args.data), args.size, args.repeat, args.datasets)

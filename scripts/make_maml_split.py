"""Write the MAML code's Omniglot protocol as fixed split lists (run once; the lists are committed).

The MAML reference code pools the 1623 characters of both archives, shuffles them with Python's
``random.seed(1)`` in file-system order (which no one can recover), and takes 1100 for
meta-training, 100 for validation and the remaining 423 for testing. This script makes the
like-for-like protocol reproducible: the same sizes, drawn by a seeded permutation of the sorted
character names.

Usage: ``python scripts/make_maml_split.py /path/to/omniglot-28.h5 episodes/splits/omniglot-maml``
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from episodes.store import Store

SEED = 1
SIZES = {"train": 1100, "val": 100, "test": 423}


def main(store_file: str, out_dir: str) -> None:
    with Store(Path(store_file)) as store:
        names = sorted(store.part("background").class_names + store.part("evaluation").class_names)
    if len(names) != sum(SIZES.values()):
        raise SystemExit(f"expected {sum(SIZES.values())} characters, the store has {len(names)}")
    order = np.random.default_rng(SEED).permutation(len(names))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = 0
    lists = {}
    for split, size in SIZES.items():
        lists[split] = sorted(names[i] for i in order[start:start + size])
        start += size
    lists["trainval"] = sorted(lists["train"] + lists["val"])
    for split, lines in lists.items():
        (out / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])

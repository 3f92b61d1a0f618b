"""How to initialise the new head when a pretrained init changes its number of ways
(bench/NOTES.md).

20-way 1-shot Omniglot test episodes from the 5-way 1-shot MAML init, three heads:
``zero`` (fewshot's choice, = every row the old rows' mean), ``random`` (a fresh nn.Linear init,
seeded), ``tile`` (new row i = old row i mod 5). Usage: ``FEWSHOT_DATA=/tmp/fsdata python
bench/head_init.py --episodes 200``
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

import fewshot.pretrained as pt
from episodes import FixedEpisodes, load_split
from fewshot.scoring import evaluate_learner
from fewshot.training.build import TEST_SEED


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="omniglot-5w1s-maml")
    ap.add_argument("--ways", type=int, default=20)
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 3, 5])
    args = ap.parse_args()
    torch.set_num_threads(1)
    old = pt.load(args.model)
    split = load_split("omniglot", "test")
    fixed = FixedEpisodes(split, args.ways, 1, args.queries, count=args.episodes, seed=TEST_SEED)
    w_old, b_old = old.model.classifier.weight.detach(), old.model.classifier.bias.detach()
    for head in ("zero", "random", "tile"):
        learner = pt.load(args.model, ways=args.ways)
        with torch.no_grad():
            cls = learner.model.classifier
            if head == "random":
                g = torch.Generator().manual_seed(0)
                fresh = nn.Linear(cls.in_features, args.ways)
                bound = 1 / cls.in_features ** 0.5
                cls.weight.copy_(
                    torch.empty_like(fresh.weight).uniform_(-bound, bound, generator=g))
                cls.bias.copy_(torch.empty_like(fresh.bias).uniform_(-bound, bound, generator=g))
            elif head == "tile":
                idx = torch.arange(args.ways) % w_old.shape[0]
                cls.weight.copy_(w_old[idx])
                cls.bias.copy_(b_old[idx])
        for steps in args.steps:
            _, s = evaluate_learner(learner, fixed.batches(25), steps=steps)
            print(f"{head:6s} steps={steps}: {100 * s.mean:.2f} ± {100 * s.ci95:.2f} (n={s.n})",
                  flush=True)


if __name__ == "__main__":
    main()

"""``fewshot show-episode``: save a PNG grid of one sampled episode (what the model sees).

Usage: ``fewshot show-episode omniglot --split train --ways 5 --shots 1 --queries 2 --seed 0 --out
episode.png``

One row per label: its support images, a separator, then its query images; rows are labelled
"label: class name". The PNG is written to a temp file in the same folder and renamed into place.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from episodes import EpisodeSampler, load_split, render_episode
from episodes.files import atomic_open

from ..errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "show-episode",
        help="save a PNG grid of one sampled episode",
        description="Sample one N-way K-shot Q-query episode and save it as a PNG grid.",
    )
    p.add_argument("dataset", help="dataset name, e.g. omniglot, mnist, fashion-mnist")
    p.add_argument("--split", default="train", help="split name (default: train)")
    p.add_argument("--ways", type=int, default=5, help="classes per episode (default: 5)")
    p.add_argument("--shots", type=int, default=1, help="support examples per class (default: 1)")
    p.add_argument("--queries", type=int, default=2, help="query examples per class (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--root", default=None,
                   help="data root (default: $FEWSHOT_DATA, else ~/.cache/fewshot)")
    p.add_argument("--scale", type=int, default=2,
                   help="enlarge each pixel to scale x scale (default: 2)")
    p.add_argument("--out", required=True, help="output PNG path")
    p.set_defaults(func=run)


def write_png(image, out: Path) -> None:
    """Save a PIL image to ``out`` atomically (temp file in the same folder, fsync,
    ``os.replace``)."""
    folder = out.parent
    if not folder.is_dir():
        raise ConfigError(
            f"--out folder {str(folder)!r} does not exist: create it or choose another path")
    with atomic_open(out, error=ConfigError, hint="choose another --out") as fh:
        image.save(fh, format="PNG")


def run(args: argparse.Namespace) -> int:
    if args.scale < 1:
        raise ConfigError(f"--scale must be >= 1, got {args.scale}: pass e.g. --scale 2")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {str(out)!r} must end in .png: pass e.g. --out episode.png")
    if not out.parent.is_dir():
        raise ConfigError(
            f"--out folder {str(out.parent)!r} does not exist: create it or choose another path")
    split = load_split(args.dataset, args.split, root=args.root)
    sampler = EpisodeSampler(split, args.ways, args.shots, args.queries, args.seed)
    batch, classes = sampler.sample(1, return_classes=True)
    labels = [split.class_names[int(c)] for c in classes[0]]
    image = render_episode(batch, labels=labels, scale=args.scale)
    write_png(image, out)
    print(f"wrote {out} ({args.ways}-way {args.shots}-shot {args.queries}-query episode from "
          f"{args.dataset}/{args.split})")
    return 0

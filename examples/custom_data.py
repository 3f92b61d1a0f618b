"""Your own data as few-shot episodes, three ways (runs in seconds on generated data).

Usage: ``python examples/custom_data.py``

1. arrays + labels      -> ``from_arrays``       -> ``EpisodeSampler``
2. an image folder tree -> ``from_image_folder`` -> ``EpisodeSampler``
3. a task function      -> ``TaskGenerator``
"""
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from episodes import EpisodeSampler, Task, TaskGenerator, from_arrays, from_image_folder


def main() -> None:
    rng = np.random.default_rng(0)

    # 1. In-memory arrays: 300 uint8 images 1x16x16 with string labels (any label values work).
    x = rng.integers(0, 256, size=(300, 1, 16, 16), dtype=np.uint8)
    y = rng.choice(["cat", "dog", "fox", "owl", "eel", "ant"], size=300)
    split = from_arrays(x, y)
    batch = EpisodeSampler(split, ways=5, shots=1, queries=3, seed=0).sample(4)
    print("arrays:", split.num_classes, "classes ->", tuple(batch.support_x.shape),
          tuple(batch.query_x.shape))

    # 2. An image folder: one subfolder per class (here: 4 classes x 6 generated PNGs).
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(4):
            (Path(tmp) / f"class{c}").mkdir()
            for i in range(6):
                pixels = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(Path(tmp) / f"class{c}" / f"{i}.png")
        split = from_image_folder(tmp, size=16, grayscale=True)
    batch = EpisodeSampler(split, ways=3, shots=2, queries=2, seed=0).sample(2)
    print("folder:", split.class_names, "->", tuple(batch.support_x.shape))

    # 3. A task function: 2-way linear classification of 2-D points, drawn from the given generator.
    def make_task(g: torch.Generator) -> Task:
        w = torch.randn(2, generator=g)
        xs = torch.randn(20, 2, generator=g)
        ys = (xs @ w > 0).long()
        return Task(xs[:10], ys[:10], xs[10:], ys[10:])

    tasks = TaskGenerator(make_task, seed=0, ways=2)
    batch = tasks.sample(8)
    print("generator:", tuple(batch.support_x.shape), "ways =", batch.ways)


if __name__ == "__main__":
    main()

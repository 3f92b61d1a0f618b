"""episodes: few-shot data — datasets, stores, episode samplers and task sources.

Usage::

    from episodes import load_split, EpisodeSampler
    sampler = EpisodeSampler(load_split("omniglot", "train"), ways=5, shots=1, queries=15, seed=0)
    batch = sampler.sample(32)   # TaskBatch, support_x [32, 5, 1, 28, 28]

This package never imports ``fewshot``.
"""
from .errors import DataError
from .types import ClassSplit, Task, TaskBatch
from .sampler import EpisodeSampler
from .fixed import FixedEpisodes
from .sinusoid import SinusoidTasks
from .custom import TaskGenerator, from_arrays, from_image_folder
from .viz import GridLayout, render_episode
from .paths import data_root, store_path
from .omniglot import prepare_omniglot
from .idx import prepare_mnist, read_idx
from .mini_imagenet import prepare_mini_imagenet
from .registry import DATASETS, load_split, prepare

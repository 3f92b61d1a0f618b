"""episodes: few-shot data — datasets, stores, episode samplers and task sources.

Usage::

    from episodes import load_split, EpisodeSampler
    sampler = EpisodeSampler(load_split("omniglot", "train"), ways=5, shots=1, queries=15, seed=0)
    batch = sampler.sample(32)   # TaskBatch, support_x [32, 5, 1, 28, 28]

This package never imports ``fewshot``.
"""
from .benchmarks import BENCHMARKS, BenchmarkTasks, benchmark_tasks, get_tasksets
from .custom import TaskGenerator, from_arrays, from_image_folder
from .episode_dataset import EpisodeDataset
from .errors import DataError
from .fixed import FixedEpisodes
from .idx import prepare_mnist, read_idx
from .mini_imagenet import prepare_mini_imagenet
from .omniglot import prepare_omniglot
from .paths import data_root, store_path
from .preprocessing import INTERPOLATIONS, Preprocessing
from .registry import DATASETS, dataset_preprocessing, load_split, prepare, split_protocol
from .sampler import EpisodeSampler
from .shard import ShardedSource
from .sinusoid import SinusoidTasks
from .types import ClassSplit, Task, TaskBatch
from .viz import GridLayout, render_episode

"""Turn a TrainConfig into the objects of a run: device, model, learner, task sources,
meta-optimizer."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from episodes import ClassSplit, EpisodeSampler, FixedEpisodes, SinusoidTasks, TaskBatch, load_split

from ..config import TrainConfig
from ..errors import ConfigError
from ..learners import GradientLearner, build_learner
from ..meta_optimizer import build_meta_optimizer
from ..nn import MLP, Conv4, FullyConnected

# Fixed evaluation sets use their own seeds (not the training seed), so every run of a preset is
# validated and tested on the same episodes.
VAL_SEED = 1
TEST_SEED = 2
_CHANNELS = {"omniglot": 1, "mnist": 1, "fashion-mnist": 1, "mini-imagenet": 3}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cuda`` without a GPU -> ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device '{name}' asked for but CUDA is not available: use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device '{name}' is not valid: use cpu, cuda, cuda:N or auto") from exc


def configure_backends(cfg: TrainConfig) -> None:
    """cuDNN settings: ``deterministic=True, benchmark=False`` when ``cfg.deterministic`` (the
    default: bit-reproducible runs on the same GPU/software), else ``benchmark=True`` (faster,
    autotuned, not reproducible). No effect on CPU runs, which are always deterministic here."""
    torch.backends.cudnn.deterministic = bool(cfg.deterministic)
    torch.backends.cudnn.benchmark = not cfg.deterministic


def backbone_identity(cfg: TrainConfig) -> str:
    """A short string naming the backbone architecture (stored in checkpoints and manifests)."""
    m = cfg.model
    if m.backbone == "conv4":
        channels = _CHANNELS.get(cfg.data.dataset, 1)
        return f"conv4(hidden={m.hidden},pool={m.pool},in={channels},size={cfg.data.size})"
    return f"{m.backbone}(hidden={list(m.hidden_sizes)})"


def run_identity(cfg: TrainConfig) -> dict[str, str]:
    """``{"learner": ..., "backbone": ...}``: what a checkpoint must match to be loaded into
    ``cfg``'s learner."""
    return {"learner": cfg.learner.name, "backbone": backbone_identity(cfg)}


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    """The backbone of ``cfg`` (initialised from the current torch seed, see
    :func:`build_learner_from_config`)."""
    m, d = cfg.model, cfg.data
    if d.is_regression:
        if m.backbone != "mlp":
            raise ConfigError(f"dataset 'sinusoid' needs model.backbone 'mlp', got '{m.backbone}'")
        return MLP(1, 1, hidden=tuple(m.hidden_sizes))
    channels = _CHANNELS[d.dataset]
    if m.backbone == "conv4":  # per-step BN (MAML++) is set up by the learner from its config
        return Conv4(channels, d.ways, hidden=m.hidden, image_size=d.size, pool=m.pool)
    if m.backbone == "fc":
        return FullyConnected(channels * d.size * d.size, d.ways, hidden=tuple(m.hidden_sizes))
    raise ConfigError(
        f"model.backbone '{m.backbone}' does not fit dataset '{d.dataset}': use conv4 or fc")


def build_learner_from_config(cfg: TrainConfig,
                              device: torch.device | str = "cpu") -> GradientLearner:
    """Model + learner of ``cfg`` on ``device``; weights initialised from a generator seeded by
    ``cfg.seed``."""
    # nn.Module initialisers draw from the global torch RNG: fork it, seed it from cfg.seed, and
    # restore it afterwards, so the init is a pure function of the seed and leaves no trace.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
        learner = build_learner(cfg.learner.name, model, cfg.learner.config)
    # register_learner accepts any class: training needs the base's API
    if not isinstance(learner, GradientLearner):
        raise ConfigError(
            f"learner {cfg.learner.name!r} is a {type(learner).__name__}, not a GradientLearner: "
            "register a subclass of fewshot.learners.GradientLearner to train it")
    return learner.to(device)


def build_train_source(cfg: TrainConfig, device: torch.device | str | None = None) -> Any:
    """The meta-training task source (seeded by ``cfg.seed``; ``state_dict()`` for resume)."""
    d = cfg.data
    if d.is_regression:
        return SinusoidTasks(d.shots, d.queries, seed=cfg.seed)
    split = load_data_split(cfg, d.train_split)
    return EpisodeSampler(split, d.ways, d.shots, d.queries, seed=cfg.seed, device=device)


def load_data_split(cfg: TrainConfig, split: str) -> ClassSplit:
    """``episodes.load_split`` for ``cfg``'s dataset (its DataError names the ``fewshot prepare``
    command)."""
    return load_split(cfg.data.dataset, split, cfg.data.root, size=cfg.data.size)


@dataclass
class FixedSet:
    """A fixed, seeded set of evaluation tasks: ``batches(B)`` yields the same TaskBatches every
    time."""

    source: Any
    count: int
    ways: int | None
    shots: int
    queries: int
    split: str
    seed: int
    device: torch.device | str | None = None

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator:
        """Tasks ``start..stop-1`` (default: all) in order, ``batch_size`` at a time."""
        stop = self.count if stop is None else stop
        if hasattr(self.source, "batches"):
            for batch in self.source.batches(batch_size, start, stop):
                yield batch.to(self.device) if self.device is not None else batch
            return
        full = self.source  # a TaskBatch holding every task (regression)
        for first in range(start, stop, batch_size):
            sl = slice(first, min(first + batch_size, stop))
            batch = TaskBatch(full.support_x[sl], full.support_y[sl], full.query_x[sl],
                              full.query_y[sl], full.ways)
            yield batch.to(self.device) if self.device is not None else batch


def build_fixed_set(cfg: TrainConfig, which: str, *, count: int, split: str | None = None,
                    seed: int | None = None, device: torch.device | str | None = None) -> FixedSet:
    """The fixed validation (``which='val'``) or test (``'test'``) episode set of ``cfg``.

    Episodes depend only on (dataset, split, ways, shots, queries, count, seed), never on the batch
    size.
    """
    d = cfg.data
    split = split or (d.val_split if which == "val" else d.test_split)
    seed = (VAL_SEED if which == "val" else TEST_SEED) if seed is None else seed
    queries = d.test_queries
    if d.is_regression:
        # one draw of all tasks at once, so task i does not depend on the batch size
        full = SinusoidTasks(d.shots, queries,
                             seed=seed * 7919 + {"val": 0, "test": 1}.get(which, 2)).sample(count)
        return FixedSet(full, count, None, d.shots, queries, split, seed, device)
    data = load_data_split(cfg, split)
    fixed = FixedEpisodes(data, d.ways, d.shots, queries, count=count, seed=seed)
    return FixedSet(fixed, count, d.ways, d.shots, queries, split, seed, device)


def build_optimizer(learner: torch.nn.Module, cfg: TrainConfig):
    """``fewshot.meta_optimizer.build_meta_optimizer`` for ``cfg.optim`` over the run's iterations:
    ``(Adam, cosine scheduler or None)``."""
    return build_meta_optimizer(learner.parameters(), cfg.optim, cfg.iterations)


def image_arrays(dataset: str, split: str,
                 root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [M, H*W] float in [0, 1], y [M] int64)`` of a prepared image dataset split (the HPO
    comparison's and the learned-optimizer problems' data)."""
    data = load_split(dataset, split, root)
    x = data.data.flatten(1).float().div_(255.0)
    y = torch.repeat_interleave(torch.arange(data.num_classes), data.counts)
    return x, y

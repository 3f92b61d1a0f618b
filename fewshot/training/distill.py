"""Running a dataset-distillation run (``fewshot distill``): the outer loop over real batches,
checkpoints that resume it exactly, and the test of what it distilled.

The run folder holds ``last.pt`` (the distilled data, the fixed network initialisation, Adam and
its schedule, the real-batch and initialisation generators, every RNG state: a run killed at any
point and resumed ends bit-identical on CPU), ``best.pt`` (the state with the best validation
accuracy on training images: ``DistillConfig``), ``metrics.jsonl`` (the distillation loss and the
validation curve) and, at the end, ``result.json`` (test accuracy of networks trained on the
distilled data). SIGINT (Ctrl-C) and SIGTERM stop the run after the current iteration with
``last.pt`` written at it (``fewshot.training.interrupt``).

Usage: ``distill(get_distill_preset("mnist-distill-10"), "runs/mnist-distill-10")``
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from episodes import ClassSplit, load_split
from episodes.files import atomic_write_text

from ..bilevel.distillation import DistilledData, distillation_loss, train_on_distilled
from ..config.distill import DistillConfig
from ..config.typed import from_dict, to_dict
from ..errors import CheckpointError, ConfigError
from ..functional import Params, call
from ..nn import LeNet
from ..runtime.distributed import Ranks
from .checkpoint import TrainingState, load_checkpoint, restore_training_state, save_checkpoint
from .interrupt import StopSignals, TrainingInterrupted
from .metrics_log import MetricsLogger
from .rng import seed_global_rng
from .run_folder import BEST, LAST, RunLock, check_writable

# per-dataset normalisation of the [0, 1] pixels (mean, std), as the authors' code applies
NORMALISATION = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
IDENTITY = {"learner": "dataset-distillation", "backbone": "lenet"}
RESULT_FILE = "result.json"
# the validation images and networks are drawn from the run's seed plus this, apart from the
# draws that train (seed + 1: real batches and fresh initialisations)
VALIDATION_DRAW = 2


class Distillation(nn.Module):
    """What a run learns and keeps: the distilled ``data`` and the ``network`` (LeNet, its weights
    the fixed initialisation; with random initialisations only its architecture matters)."""

    def __init__(self, cfg: DistillConfig) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(cfg.seed)
        self.network = LeNet(1, 10, generator=gen).requires_grad_(False)
        layers = [n for n, _ in self.network.named_parameters()]
        self.data = DistilledData(10, cfg.images_per_class, cfg.steps, cfg.epochs, (1, 28, 28),
                                  lr=cfg.step_size, soft_labels=cfg.soft_labels,
                                  layers=layers if cfg.per_layer_step_sizes else None,
                                  generator=gen)

    def init(self) -> Params:
        """The fixed initialisation (the network's weights)."""
        return {n: p.detach() for n, p in self.network.named_parameters()}


class SeededDraws:
    """A ``torch.Generator`` with ``state_dict``/``load_state_dict``, so the checkpoint resumes its
    draws: shuffled real batches (``batches``) and fresh initialisations (``network_init``)."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.order: torch.Tensor | None = None
        self.position = 0

    def batches(self, count: int, size: int) -> torch.Tensor:
        """The indices of the next real batch of ``size`` out of ``count`` (a new shuffle each
        pass, a short last batch dropped)."""
        if self.order is None or self.position + size > count:
            self.order, self.position = torch.randperm(count, generator=self.generator), 0
        index = self.order[self.position:self.position + size]
        self.position += size
        return index

    def network_init(self, network: nn.Module) -> Params:
        """A fresh initialisation of ``network``'s architecture (its weights untouched)."""
        fresh = LeNet(1, 10, generator=self.generator)
        names = [n for n, _ in network.named_parameters()]
        return {n: p.detach() for n, p in zip(names, fresh.parameters())}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(),
                "order": self.order if self.order is not None else torch.zeros(0, dtype=torch.long),
                "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"] if state["order"].numel() else None
        self.position = int(state["position"])


def real_data(cfg: DistillConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [N, 1, 28, 28] normalised, labels [N])`` of ``cfg.dataset``'s ``split``."""
    data: ClassSplit = load_split(cfg.dataset, split, root=cfg.data_root)
    mean, std = NORMALISATION[cfg.dataset]
    x = (data.data.float() / 255 - mean) / std
    counts = data.class_offsets[1:] - data.class_offsets[:-1]
    return x, torch.repeat_interleave(torch.arange(len(counts)), counts)


@dataclass
class DistillResult:
    """Where the run stopped and, when it finished, the test accuracy of networks trained on its
    data (``test_mean``, ``test_ci95`` over ``test_inits`` initialisations; one for a fixed one)."""

    iteration: int
    resumed_from: int
    last_loss: float | None
    test_mean: float | None = None
    test_ci95: float | None = None
    test_inits: int = 0


def distillation_state(cfg: DistillConfig) -> TrainingState:
    """What a run of ``cfg`` checkpoints, freshly built: the ``Distillation``, Adam over its data,
    the step schedule and the seeded draws (``sources["draws"]``); ``restore_training_state`` loads
    a ``last.pt`` into it."""
    run = Distillation(cfg)
    opt = torch.optim.Adam(run.data.parameters(), lr=cfg.lr, betas=cfg.betas)
    sched = torch.optim.lr_scheduler.StepLR(opt, cfg.decay_every, cfg.decay_factor)
    return TrainingState(run, opt, sched, {"draws": SeededDraws(cfg.seed + 1)})


def distill(cfg: DistillConfig, out: str | Path, *, quiet: bool = False) -> DistillResult:
    """Run (or resume, when ``out/last.pt`` exists) the distillation ``cfg`` into ``out``."""
    out = Path(out)
    check_writable(out)
    with RunLock(out):
        return _distill(cfg, out, quiet)


def _distill(cfg: DistillConfig, out: Path, quiet: bool) -> DistillResult:
    x, y = real_data(cfg, "train")
    state = distillation_state(cfg)
    run, opt, sched = state.learner, state.optimizer, state.scheduler
    draws = state.sources["draws"]
    assert isinstance(run, Distillation) and isinstance(draws, SeededDraws)
    assert opt is not None and sched is not None
    start, best, best_it = 0, None, None
    if (out / LAST).exists():
        ckpt = load_checkpoint(out / LAST, expect=IDENTITY)
        saved = from_dict(DistillConfig, ckpt["config"])
        changed = [f.name for f in dataclasses.fields(DistillConfig)
                   if f.name not in ("iterations", "data_root", "checkpoint_every", "log_every",
                                     "val_every")
                   and getattr(saved, f.name) != getattr(cfg, f.name)]
        if changed:
            raise ConfigError(f"{out} holds a distillation run with other settings ({changed[0]}: "
                              f"{getattr(saved, changed[0])!r} there, {getattr(cfg, changed[0])!r} "
                              "here): resume it unchanged, or choose another --out")
        start = restore_training_state(ckpt, state)
        best, best_it = ckpt["extra"].get("best_accuracy"), ckpt["extra"].get("best_iteration")
    else:
        seed_global_rng(cfg.seed)
    val_x, val_y = validation_images(cfg, x, y)
    last_loss = None

    def checkpoint(path: Path, it: int) -> None:
        save_checkpoint(path, state, iteration=it, config=to_dict(cfg), identity=IDENTITY,
                        extra={"best_accuracy": best, "best_iteration": best_it})

    with MetricsLogger(out, tensorboard=False, resume_from=start if start else None) as log, \
            StopSignals(announce=not quiet) as stop, \
            tqdm(total=cfg.iterations, initial=start, desc="distill", unit="it",
                 disable=quiet) as bar:
        for it in range(start + 1, cfg.iterations + 1):
            index = draws.batches(len(x), cfg.batch_size)
            opt.zero_grad()
            total = 0.0
            for _ in range(cfg.inits_per_iteration):
                init = run.init() if cfg.init == "fixed" else draws.network_init(run.network)
                loss = distillation_loss(run.network, run.data, init, x[index], y[index])
                (loss / cfg.inits_per_iteration).backward()
                total += float(loss.detach()) / cfg.inits_per_iteration
            if not math.isfinite(total):
                raise CheckpointError(f"the distillation loss became {total} at iteration {it}: "
                                      f"lower lr (now {cfg.lr}) or step_size; {out / LAST} holds "
                                      "the last good state")
            opt.step()
            sched.step()
            last_loss = total
            bar.update(1)
            if it % cfg.log_every == 0 or it == cfg.iterations:
                log.write("train", it, loss=total, lr=sched.get_last_lr()[0],
                          step_sizes=run.data.step_sizes.lrs.detach().tolist())
            if it % cfg.val_every == 0:
                accuracy, ci95 = mean_ci(validation_accuracies(run, cfg, val_x, val_y))
                log.write("val", it, accuracy=accuracy, ci95=ci95, images=len(val_x),
                          networks=1 if cfg.init == "fixed" else cfg.val_inits)
                if best is None or accuracy > best:
                    best, best_it = accuracy, it
                    checkpoint(out / BEST, it)
            signum = stop.requested(Ranks())
            if it % cfg.checkpoint_every == 0 or it == cfg.iterations or signum:
                checkpoint(out / LAST, it)
            if signum and it < cfg.iterations:
                raise TrainingInterrupted(signum, it, out / LAST)
    result = DistillResult(cfg.iterations, start, last_loss)
    if start < cfg.iterations or not (out / RESULT_FILE).exists():
        accuracies = trained_network_accuracies(run, cfg)
        result.test_mean, result.test_ci95 = mean_ci(accuracies)
        result.test_inits = len(accuracies)
        text = json.dumps(dataclasses.asdict(result), indent=2) + "\n"
        atomic_write_text(out / RESULT_FILE, text, error=CheckpointError)
    return result


def trained_network_accuracies(run: Distillation, cfg: DistillConfig, *, seed: int = 0,
                               inits: int | None = None, split: str = "test") -> list[float]:
    """Accuracy on ``split`` (default the 10,000 test images; ``"train"``: the 60,000 the run
    distilled, a yardstick that leaves the test set unseen) of networks trained on ``run``'s
    distilled data: from the fixed initialisation, or from ``inits`` (default
    ``cfg.eval_inits``) fresh ones drawn from ``seed``."""
    x, y = real_data(cfg, split)
    count = cfg.eval_inits if inits is None else inits
    return [float(c.float().mean()) for c in trained_network_hits(run, cfg, x, y, seed=seed,
                                                                 inits=count)]


def trained_network_hits(run: Distillation, cfg: DistillConfig, x: torch.Tensor,
                         y: torch.Tensor, *, seed: int, inits: int) -> list[torch.Tensor]:
    """For each network trained on ``run``'s data (the fixed initialisation, or ``inits`` fresh
    ones drawn from ``seed``): which of the images ``x`` it classifies as ``y`` (bool [N])."""
    draws = SeededDraws(seed)
    out = []
    for _ in range(1 if cfg.init == "fixed" else inits):
        init = run.init() if cfg.init == "fixed" else draws.network_init(run.network)
        trained = train_on_distilled(run.network, run.data, init)
        with torch.no_grad():
            logits = call(run.network, trained, {}, x)
        out.append(logits.argmax(-1) == y)
    return out


def validation_images(cfg: DistillConfig, x: torch.Tensor, y: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's validation images: ``cfg.val_images`` of the training images ``x`` (all of them
    when fewer), the same draw for every run of the seed."""
    gen = torch.Generator().manual_seed(cfg.seed + VALIDATION_DRAW)
    index = torch.randperm(len(x), generator=gen)[:cfg.val_images]
    return x[index], y[index]


def validation_accuracies(run: Distillation, cfg: DistillConfig, x: torch.Tensor,
                          y: torch.Tensor) -> list[float]:
    """Accuracy on the validation images ``x`` of networks trained on ``run``'s data: the fixed
    initialisation, or ``cfg.val_inits`` fresh ones, the same networks at every validation."""
    hits = trained_network_hits(run, cfg, x, y, seed=cfg.seed + VALIDATION_DRAW,
                                inits=cfg.val_inits)
    return [float(c.float().mean()) for c in hits]


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width (1.96 sample std / sqrt(n); 0 for one value)."""
    t = torch.tensor(values, dtype=torch.float64)
    ci = 1.96 * float(t.std(unbiased=True)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(t.mean()), ci



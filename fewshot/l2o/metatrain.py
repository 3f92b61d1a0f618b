"""Meta-training a learned optimizer by truncated backpropagation through time.

For each training iteration a fresh batch of problems is optimized for ``steps`` steps by the
LSTM; every ``unroll`` steps the meta-loss ``sum_t w_t f(theta_t)`` (``w_t = 1``, mean over the
problems) of that truncation is back-propagated into the LSTM weights phi and Adam takes a step.
The optimizee gradients ``grad_t`` are inputs to the LSTM, computed without a graph, so
``d grad_t / d phi = 0`` (no second derivatives); phi reaches the meta-loss through
``theta_{t+1} = theta_t + g_t`` and the LSTM states. Between truncations theta and the states
are detached. After each epoch (``iterations_per_epoch`` iterations) the frozen optimizer runs on
fixed validation problems, and the weights with the lowest mean final loss are kept (early
stopping).

Usage::

    result = meta_train(QuadraticFamily(), QuadraticFamily(), MetaTrainConfig(epochs=5))
    net = result.net                    # best weights by validation
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm import tqdm

from ..checks import check_count, check_number
from ..errors import ConfigError
from .net import CoordinateLSTM, LSTMOptimizerConfig, State
from .optimizer import LearnedOptimizer
from .problems import ProblemBatch, ProblemFamily
from .trajectory import final_loss, run_trajectory


@dataclass
class MetaTrainConfig:
    """Meta-training protocol (defaults: the thesis' / paper's values)."""

    net: LSTMOptimizerConfig = field(default_factory=LSTMOptimizerConfig)
    steps: int = 100                   # optimization horizon of a training problem
    # truncation length of BPTT (phi is updated every `unroll` steps)
    unroll: int = 20
    epochs: int = 100
    # one iteration = one batch of fresh problems optimized for `steps`
    iterations_per_epoch: int = 100
    problems_per_iteration: int = 1
    lr: float = 1e-3                   # Adam on phi
    clip_norm: float | None = None     # optional clipping of phi's gradient norm
    val_problems: int = 100
    # stop after this many epochs without a better validation loss
    patience: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("steps", "unroll", "epochs", "iterations_per_epoch", "problems_per_iteration",
                    "val_problems"):
            check_count(getattr(self, key), f"meta-training {key}")
        if self.unroll > self.steps:
            raise ConfigError(
                f"unroll ({self.unroll}) is longer than the optimization horizon steps "
                f"({self.steps}): "
                "use unroll <= steps (the paper unrolls 20 of 100 steps)")
        check_number(self.lr, "meta-training lr", above=0)
        if self.patience is not None:
            check_count(self.patience, "patience (or None)")


def unroll(net: CoordinateLSTM, problems: ProblemBatch, theta: torch.Tensor, state: State,
           start: int,
           length: int) -> tuple[torch.Tensor, torch.Tensor, State]:
    """Optimize ``length`` steps from ``theta`` (detached, at step ``start``) with the LSTM.

    Returns (meta-loss = mean over problems of ``sum_{k=1..length} f(theta_{start+k})``, final
    theta, final state), with the graph from the meta-loss to phi kept; the caller detaches
    theta/state before the next truncation.
    """
    theta = theta.detach().requires_grad_(True)
    loss = problems.loss(theta, start)
    meta = theta.new_zeros(())
    for k in range(length):
        # grad_t as a constant input: computed from the current graph but without create_graph.
        (grad,) = torch.autograd.grad(loss.sum(), theta, retain_graph=True)
        update, state = net(grad.detach().reshape(-1), state)
        theta = theta + update.view_as(theta)
        loss = problems.loss(theta, start + k + 1)
        meta = meta + loss.mean()
    return meta, theta, state


@dataclass
class EpochRecord:
    epoch: int
    train_meta_loss: float     # mean per-step meta-loss over the epoch's truncations
    val_final_loss: float      # mean f(theta_T) over the validation problems
    seconds: float


@dataclass
class MetaTrainResult:
    net: CoordinateLSTM                 # best weights by validation
    best_epoch: int
    best_val: float
    history: list[EpochRecord]


def validation_loss(net: CoordinateLSTM, problems: ProblemBatch, steps: int) -> float:
    """Mean final loss of the frozen ``net`` as a ``LearnedOptimizer`` on ``problems``."""
    frozen = copy.deepcopy(net)
    return final_loss(run_trajectory(problems, lambda ps: LearnedOptimizer(ps, net=frozen), steps))


def meta_train(train: ProblemFamily, val: ProblemFamily, config: MetaTrainConfig,
               callback: Callable[[EpochRecord], None] | None = None,
               progress: bool = False) -> MetaTrainResult:
    """Meta-train a ``CoordinateLSTM`` on problems from ``train``; select by ``val`` (see module
    doc).

    ``progress=True``: a tqdm bar of the meta-training iterations on stderr; off by default.
    """
    bar = tqdm(total=config.epochs * config.iterations_per_epoch, desc="meta-training", unit="it",
               disable=not progress, dynamic_ncols=True, leave=False)
    try:
        return _meta_train(train, val, config, callback, bar)
    finally:
        bar.close()


def _meta_train(train: ProblemFamily, val: ProblemFamily, config: MetaTrainConfig,
                callback: Callable[[EpochRecord], None] | None, bar: tqdm) -> MetaTrainResult:
    # the LSTM's initial weights, without touching the global RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = CoordinateLSTM(config.net)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    train_gen = torch.Generator().manual_seed(config.seed)
    val_problems = val.sample(config.val_problems, config.steps,
                              torch.Generator().manual_seed(config.seed + 1))
    best_val, best_epoch, best_state = validation_loss(net, val_problems,
                                                       config.steps), 0, copy.deepcopy(
                                                           net.state_dict())
    history: list[EpochRecord] = [EpochRecord(0, float("nan"), best_val, 0.0)]
    if callback:
        callback(history[0])
    for epoch in range(1, config.epochs + 1):
        start, total, count = time.perf_counter(), 0.0, 0
        net.train()
        for _ in range(config.iterations_per_epoch):
            problems = train.sample(config.problems_per_iteration, config.steps, train_gen)
            theta = problems.init()
            state = net.initial_state(theta.numel())
            for begin in range(0, config.steps, config.unroll):
                length = min(config.unroll, config.steps - begin)
                meta, theta, state = unroll(net, problems, theta, state, begin, length)
                opt.zero_grad(set_to_none=True)
                meta.backward()
                if config.clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip_norm)
                opt.step()
                theta, state = theta.detach(), tuple(s.detach() for s in state)
                total += float(meta.detach()) / length
                count += 1
            bar.update()
        val_loss = validation_loss(net, val_problems, config.steps)
        record = EpochRecord(epoch, total / count, val_loss, time.perf_counter() - start)
        history.append(record)
        if callback:
            callback(record)
        if val_loss < best_val:
            best_val, best_epoch, best_state = val_loss, epoch, copy.deepcopy(net.state_dict())
        elif config.patience is not None and epoch - best_epoch >= config.patience:
            break
    net.load_state_dict(best_state)
    return MetaTrainResult(net.eval(), best_epoch, best_val, history)

"""Change the number of ways of a (meta-trained) learner: same body and update rule, an N-way head.

Why zero the new head: a meta-initialization's head rows carry no meaning for a new task's classes
(labels are a fresh random permutation per episode), so no class may start ahead of another. A zero
head gives every class the same score, and the first inner step writes each row from that class's
support examples. A head whose rows all equal the mean of the old rows is *exactly* equivalent
(softmax ignores a shift shared by every class, and the gradient reaching the body,
``sum_i (p_i - y_i) w_i``, loses the shared part because ``sum_i (p_i - y_i) = 0``), so zero is
that choice written simply. Measured against the alternatives (fresh random rows, old rows tiled)
on 20-way Omniglot from the 5-way init: bench/NOTES.md, "Changing ways".

Rule tensors that depend on the ways (Meta-SGD's per-element learning rates of the head) get, for
each new class, the mean of the old classes' values: a learning rate of zero would freeze that row.

Usage: ``learner20, cfg20 = with_ways(learner, cfg, 20)`` (``fewshot.pretrained.load(name,
ways=20)``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_count
from ..config import TrainConfig, apply_overrides
from ..errors import ConfigError
from ..learners import GradientLearner
from .build import build_learner_from_config
from .checkpoint import load_learner_state


def head_names(model: nn.Module) -> tuple[str, str]:
    """``(weight, bias)`` parameter names of the model's output layer (its last ``nn.Linear``)."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"{type(model).__name__} has no nn.Linear output layer: only models with a linear head "
            "can change their number of ways")
    return f"{linears[-1]}.weight", f"{linears[-1]}.bias"


def _widen(old: torch.Tensor, new_shape: torch.Size, old_ways: int, ways: int,
           name: str) -> torch.Tensor:
    """``old`` with every dim of size ``old_ways`` that must become ``ways`` filled by the mean over
    it."""
    dims = [d for d, (a, b) in enumerate(zip(old.shape, new_shape)) if a != b]
    if len(old.shape) != len(new_shape) or any(old.shape[d] != old_ways or new_shape[d] != ways
                                               for d in dims):
        raise ConfigError(
            f"cannot change the ways of this learner: its tensor '{name}' {tuple(old.shape)} -> "
            f"{tuple(new_shape)} does not grow with the number of classes alone; "
            f"train a {ways}-way "
            "model instead")
    out = old
    for d in dims:
        out = out.mean(d, keepdim=True).expand(*out.shape[:d], ways, *out.shape[d + 1:])
    return out.contiguous()


def with_ways(learner: nn.Module, cfg: TrainConfig, ways: int) -> tuple[GradientLearner,
                                                                        TrainConfig]:
    """A new learner like ``learner`` (built from ``cfg``) with a ``ways``-way zero head;
    ``(learner, cfg)``.

    Every other meta-parameter and buffer is copied unchanged; ``learner`` itself is not modified.
    With ``ways`` equal to the learner's own, the trained head is kept (a plain copy).
    A learner whose own tensors grow with the ways in another way (MT-net's output transform and
    mask logits) raises a ConfigError.
    """
    if cfg.data.is_regression:
        raise ConfigError(
            "a regression model has no classes: ways only apply to classification models")
    check_count(ways, "ways", minimum=2)
    old_ways = cfg.data.ways
    new_cfg = apply_overrides(cfg, [f"data.ways={ways}"])
    device = next(learner.parameters()).device
    fresh = build_learner_from_config(new_cfg, "cpu")
    head = set(head_names(fresh.get_submodule("model")))
    state = {}
    new_state = fresh.state_dict()
    for key, old in learner.state_dict().items():
        target = new_state[key]
        old = old.detach().cpu()
        if old.shape == target.shape:
            state[key] = old.clone()
        elif key.removeprefix("model.") in head:
            state[key] = torch.zeros_like(target)
        else:
            state[key] = _widen(old, target.shape, old_ways, ways, key)
    load_learner_state(fresh, state)
    fresh.train(learner.training)
    return fresh.to(device), new_cfg

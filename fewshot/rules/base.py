"""The update-rule protocol: how an inner loop turns gradients into parameter updates.

A rule is a value that learners plug in, in the spirit of optax's ``GradientTransformation`` and
higher's ``DifferentiableOptimizer._update``, but over ``torch.func`` parameter dicts:

* ``init(params, noise)`` builds the per-task state (a dict of tensors, so it can be batched by
  ``vmap``); ``noise`` is a ``[noise_size]`` tensor of U(0, 1) draws the learner makes from its own
  seeded generator (a rule never draws random numbers itself, so it is vmap-safe and resumes
  bit-identically), or ``None`` for deterministic evaluation.
* ``forward(grads, state, params, *, step, loss)`` returns ``(updates, new_state)``; the inner loop
  adds the updates to the parameters (``apply_updates``).  Returning updates rather than new
  parameters is what lets rules be chained (``Chain(RowMask(...), SGD(...))``).

Rules are ``nn.Module``s so that their meta-parameters (learned learning rates, LSTM weights, mask
logits) are found by ``learner.parameters()`` and saved in ``state_dict``.  They must be pure: never
modify themselves or their inputs inside ``init``/``forward``.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence, cast

import torch
from torch import nn

Params = dict[str, torch.Tensor]
State = dict[str, Any]  # nested dicts of tensors (a pytree vmap can batch)


class UpdateRule(nn.Module):
    """Base class of every differentiable inner-loop update rule (see the module docstring)."""

    #: how many U(0, 1) draws per task ``init`` wants as ``noise`` (0: the rule is deterministic)
    noise_size: int = 0
    #: the rule reads the support loss's Hessian-vector products (``fewshot.rules.curvature``),
    #: which the
    #: inner loop then computes with the gradients
    needs_hvp: bool = False

    def init(self, params: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None) -> State:
        """Per-task state before the first step (default: none)."""
        return {}

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        raise NotImplementedError

    def bind(self, names: Sequence[str], like: torch.Tensor) -> "UpdateRule":
        """The rule a learner adapting ``names`` (tensors of ``like``'s dtype and device) uses: a
        rule made without parameter names returns a bound copy (``fewshot.rules.optim``); the
        default is ``self``."""
        return self

    def step(self, grads: Mapping[str, torch.Tensor], state: State,
             params: Mapping[str, torch.Tensor], *,
             step: int, loss: torch.Tensor) -> tuple[Params, State]:
        """``(params + updates, new_state)``: the parameters after one inner step, what the inner
        loop calls. The default adds ``forward``'s updates (``apply_updates``); a rule may override
        it to fuse computing and adding its updates (``SGD``), which must give the same numbers."""
        updates, new_state = self(grads, state, params, step=step, loss=loss)
        return apply_updates(params, updates), new_state


class Chain(UpdateRule):
    """Apply rules in order, each transforming the previous one's output (optax ``chain``).

    The first rule sees the gradients, the last one's output is added to the parameters.  The noise
    vector is split among the rules in order of their ``noise_size``.
    """

    def __init__(self, *rules: UpdateRule) -> None:
        super().__init__()
        self.rules = nn.ModuleList(rules)
        self.noise_size = sum(r.noise_size for r in rules)
        self.needs_hvp = any(r.needs_hvp for r in rules)

    def bind(self, names: Sequence[str], like: torch.Tensor) -> UpdateRule:
        rules = [r.bind(names, like) for r in cast(Iterable[UpdateRule], self.rules)]
        return self if all(a is b for a, b in zip(rules, self.rules)) else Chain(*rules)

    def init(self, params: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None) -> State:
        states, start = {}, 0
        # a ModuleList iterates as nn.Module
        for i, rule in enumerate(cast(Iterable[UpdateRule], self.rules)):
            part = None if noise is None or rule.noise_size == 0 else noise[start:start
                                                                            + rule.noise_size]
            start += rule.noise_size
            states[str(i)] = rule.init(params, part)
        return states

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *,
                step: int, loss: torch.Tensor) -> tuple[Params, State]:
        out, new_state = dict(grads), {}
        for i, rule in enumerate(self.rules):
            out, new_state[str(i)] = rule(out, state[str(i)], params, step=step, loss=loss)
        return out, new_state


def apply_updates(params: Mapping[str, torch.Tensor],
                  updates: Mapping[str, torch.Tensor]) -> Params:
    """``params`` with ``updates`` added to the named entries (the others are kept as they are)."""
    new = dict(params)
    for name, u in updates.items():
        new[name] = params[name] + u
    return new


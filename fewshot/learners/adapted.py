"""What ``learner.adapt`` returns: a model adapted to one task, callable on any number of examples.

Why a value of its own: a parameter dict alone cannot predict in ``bn_mode="support"`` (every layer
then normalises with the support set's batch statistics, which a dict does not hold), so callers
would pass the support set again at every prediction and rerun its forward. An ``AdaptedModel``
takes those statistics once, at adaptation, from the support forward at the step it uses, and
applies them to whatever it is given, so ``adapted(x)`` gives one example alone the outputs it gets
in a batch.

Usage: ``adapted = learner.adapt(sx, sy); logits = adapted(x)``; ``adapted.params`` for
``torch.func.functional_call`` or ``learner.predict(x, adapted.params, support_x=sx)``.
"""
from __future__ import annotations

from typing import Protocol

import torch

from ..functional import Params
from ..nn.batchnorm import Statistics


class Predictor(Protocol):
    """What adapted a model: it predicts with an ``AdaptedModel`` (``GradientLearner.predict``)."""

    def predict(self, x: torch.Tensor, params: AdaptedModel) -> torch.Tensor: ...


class AdaptedModel:
    """A learner's model with the parameters adapted to one task (see the module docstring).

    - ``learner``: the learner that adapted it (``adapted(x)`` is ``learner.predict(x, adapted)``);
    - ``params``: every trainable parameter (adapted and meta-learned-only ones);
    - ``steps``: the updates ``params`` had (the step chosen, see ``LearnerConfig.best_step``);
    - ``steps_run``: the updates the inner loop made;
    - ``support_losses``: ``[steps_run + 1]`` support losses, before each update and after the last;
    - ``statistics``: the support set's batch statistics per batch-norm layer at step ``steps``
      (``bn_mode="support"`` only, else None).
    """

    def __init__(self, learner: Predictor, params: Params, *, steps: int, steps_run: int,
                 support_losses: torch.Tensor, statistics: Statistics | None) -> None:
        self.learner = learner
        self.params = params
        self.steps = steps
        self.steps_run = steps_run
        self.support_losses = support_losses
        self.statistics = statistics

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The model's outputs on ``x`` ``[n, ...]`` (n >= 1), each example independent of the
        others except in ``bn_mode="transductive"``, where ``x`` is the batch whose statistics
        normalise it."""
        return self.learner.predict(x, self)

    @property
    def diverged(self) -> bool:
        """Whether the support loss ended above its lowest value (so an earlier step is used)."""
        return self.steps != self.steps_run

    def __repr__(self) -> str:
        return (
            f"AdaptedModel({type(self.learner).__name__}, steps={self.steps} of {self.steps_run}, "
            f"support loss {float(self.support_losses[0]):.4g} -> "
            f"{float(self.support_losses[self.steps]):.4g})")

"""``LearnerConfig``: the switches every gradient-based learner shares, checked once when it is made.

Why a module of its own: the config is data (a typed dataclass that ``fewshot.config`` files and the CLI
fill in and that learner configs subclass), read by the learner but independent of its code; it holds
the allowed values of the switches (``BN_MODES``, ``LOSSES``, ``TASK_BATCHING``) and ``check_lr``, the
learning-rate check the learners' configs share.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..checks import check_count, check_number
from ..errors import ConfigError

BN_MODES = ("transductive", "support", "running", "frozen")
LOSSES = ("auto", "cross_entropy", "mse")
TASK_BATCHING = ("auto", "loop", "vmap")


@dataclass
class LearnerConfig:
    """The switches every gradient-based learner shares (learner configs subclass it).

    - ``inner_steps``: adaptation steps in training; ``eval_steps`` (None = ``inner_steps``) the
      default number of steps in eval mode.
    - ``first_order``: detach the support gradients (FOMAML-style); ``first_order_epochs`` (DA):
      first order while ``epoch < first_order_epochs``, then second order.
    - ``msl``/``msl_epochs`` (MSL): query loss after every step, weighted by ``msl_weights`` while
      ``epoch < msl_epochs``; from then on only the last step's loss.
    - ``per_step_bn`` (BNRS + BNWB): batch-norm layers get ``bn_slots`` slots (None: ``max(inner_steps,
      eval_steps) + 1``; converted in place if needed); the forward with parameters after ``t`` updates
      uses slot ``t``, steps past the last slot use the last one.  ``bn_slots`` pins the count, so a
      model's default test steps can change (a pretrained manifest's ``test_steps``) while its weights
      still load.
    - ``best_step``: at evaluation (``adapt``, ``evaluate``, validation, ``fewshot eval``), when the support
      loss after the last step is above the lowest one seen (adaptation diverged), use the parameters of
      the lowest-support-loss step instead (support labels only: no query information); the step used
      is reported.  Training's meta-loss always uses the last step.
    - ``bn_mode``: ``"transductive"`` | ``"support"`` | ``"running"`` | ``"frozen"`` (docs/batchnorm.md).
    - ``adapt_norm``: also adapt normalisation-layer affine parameters (default: meta-learned only);
      ``no_adapt``: name prefixes of parameters that are meta-learned but never adapted.
    - ``loss``: ``"auto"`` (cross-entropy when ``batch.ways`` is set, else MSE) | ``"cross_entropy"`` | ``"mse"``.
    - ``task_batching``: ``"loop"`` (per task), ``"vmap"`` (one batched computation) or ``"auto"``
      (``fewshot.learners.batching``).
    - ``seed``: seeds the learner's own generator of per-task noise (only rules that draw noise, such
      as MT-net's mask sampling, use it).
    - ``checkpoint_steps`` (0 = off): recompute instead of storing: the inner loop runs in segments of
      this many steps whose graphs are rebuilt during backward (``inner_loop(checkpoint=...)``), so
      memory grows by one parameter copy per segment rather than by every step's graph, for about one
      more first-order pass of compute.  Same gradients; per-task loop only (``task_batching`` "loop"
      or "auto").
    """

    inner_steps: int = 1
    eval_steps: int | None = None
    first_order: bool = False
    first_order_epochs: int = 0
    msl: bool = False
    msl_epochs: int = 10
    per_step_bn: bool = False
    bn_mode: Literal["transductive", "support", "running", "frozen"] = "transductive"
    adapt_norm: bool = False
    no_adapt: tuple[str, ...] = ()
    loss: Literal["auto", "cross_entropy", "mse"] = "auto"
    task_batching: Literal["auto", "loop", "vmap"] = "auto"
    seed: int = 0
    checkpoint_steps: int = 0
    bn_slots: int | None = None
    best_step: bool = True

    def __post_init__(self) -> None:
        self.no_adapt = tuple(self.no_adapt)
        check_count(self.inner_steps, "inner_steps")
        for name in ("eval_steps", "bn_slots"):
            if getattr(self, name) is not None:
                check_count(getattr(self, name), name)
        for name in ("first_order_epochs", "msl_epochs", "seed", "checkpoint_steps"):
            check_count(getattr(self, name), name, minimum=0)
        if self.seed >= 2**63:
            raise ConfigError(f"seed must be below 2**63, got {self.seed}")
        for name, value, allowed in (("bn_mode", self.bn_mode, BN_MODES), ("loss", self.loss, LOSSES),
                                     ("task_batching", self.task_batching, TASK_BATCHING)):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.checkpoint_steps and self.task_batching == "vmap":
            raise ConfigError("checkpoint_steps recomputes on the per-task loop only (torch.func transforms cannot "
                              "run it): set task_batching='loop' or 'auto', or checkpoint_steps=0")


def check_lr(name: str, value: Any) -> None:
    """ConfigError unless ``value`` is a finite number >= 0 (a learning rate)."""
    check_number(value, name, at_least=0)


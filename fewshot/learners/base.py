"""The learner base: the API and hooks every gradient-based meta-learner shares.

``GradientLearner`` is the public API
(``adapt``/``predict``/``meta_loss``/``meta_backward``/``evaluate``) and the hooks a learner fills
in: a learner (MAML, Meta-SGD, MT-net, the LSTM meta-learner) is a subclass with its config
dataclass and ``build_rule`` (its update rule, a ``fewshot.rules.UpdateRule``), optionally
``prepare_model`` (e.g. MT-net's T layers), ``adapted_names`` (e.g. keeping those T layers out of
adaptation) and ``task_objective`` (its meta-objective on one task, when it is not MAML's: Reptile,
iMAML).  What it builds on has a module each under ``fewshot.learners`` (``config``, ``checks``,
``batching``, ``task``, ``bn_forward``, ``noise``, ``result``; their jobs: docs/architecture.md).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from episodes import Preprocessing

from ..checks import check_count
from ..errors import ConfigError
from ..functional import InnerLoop, LossFn, Params, adaptable_names, copy_buffers, split_state
from ..nn.batchnorm import native_kernel_under_vmap, norm_training, per_step_batchnorm
from ..rules.base import UpdateRule
from ..schedules import msl_weights
from .adapted import AdaptedModel
from .batching import ModelFacts, run_loop, run_vmap
from .bn_forward import NormModeForward, torch_batch_norms, write_back
from .checks import OutputWidths, check_task, raise_if_nonfinite, warn_if_rising
from .config import LearnerConfig
from .inputs import check_input
from .noise import draw_noise
from .result import MetaOutput, TaskResult
from .task import (
    Float32Loss,
    Objective,
    TaskSettings,
    TaskTensors,
    adapt_task,
    evaluate_task,
    maml_objective,
    result_of,
)

__all__ = ["GradientLearner"]


class GradientLearner(nn.Module):
    """Base of every learner that adapts a model's parameters by a differentiable update rule.

    Subclasses set ``config_class`` and implement ``build_rule``; ``prepare_model`` may rewrite the
    model first, ``adapted_names`` narrow the adapted parameters, ``task_objective`` replace MAML's
    meta-objective.  ``rule=`` replaces ``build_rule``'s rule (e.g. ``MAML(model, cfg,
    rule=Adam(lr=0.01))``); one made without names is bound to the adapted ones.  Meta-parameters
    are ``learner.parameters()``: the model's and the rule's.
    """

    config_class: type[LearnerConfig] = LearnerConfig
    noise_rng: torch.Tensor  # buffer registered in __init__ when the rule draws noise
    #: how raw images become this learner's inputs (set by ``fewshot.pretrained.load``; None for
    #: your own)
    preprocessing: Preprocessing | None = None

    def __init__(self, model: nn.Module, config: LearnerConfig | None = None, *,
                 loss_fn: LossFn | None = None, rule: UpdateRule | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{name} needs an nn.Module, got {type(model).__name__}")
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{name} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.user_loss_fn = loss_fn
        if config.per_step_bn:
            per_step_batchnorm(model,
                               config.bn_slots or max(config.inner_steps, config.eval_steps or 0)
                               + 1)
        self.model = self.prepare_model(model)
        self.names = self.adapted_names()
        self.model_changed()
        if not self.names:
            raise ConfigError(
                f"{name}: the model has no trainable parameters to adapt: give it parameters with "
                "requires_grad=True (or loosen no_adapt/adapt_norm)")
        try:
            self.rule = self.build_rule() if rule is None else _given_rule(rule, self)
        except RuntimeError as exc:  # e.g. a finite Python float that overflows the model's dtype
            if "overflow" not in str(exc):
                raise
            raise ConfigError(
                f"{name}: a setting of {type(config).__name__} does not fit the model's dtype "
                f"{self.reference_param().dtype} ({exc}): use a smaller value") from None
        if self.rule.noise_size:
            gen = torch.Generator().manual_seed(config.seed)
            self.register_buffer("noise_rng", gen.get_state())
        self._out_check = OutputWidths()
        self.task_shard = (0, 1)
        self._warned_rise: set[int] = set()  # step counts already warned about (warn once each)

    def shard_tasks(self, rank: int, world: int) -> None:
        """Declare that each meta-batch this learner sees is part ``rank`` of ``world`` equal parts
        of a larger one (data-parallel training, ``fewshot.runtime.distributed``): per-task noise is
        then drawn for the whole meta-batch and this part's rows taken, so every process's generator
        stays in step and the union of the parts gets the noise one process would draw."""
        if not 0 <= rank < world:
            raise ConfigError(f"shard rank must be in 0..{world - 1}, got {rank}")
        self.task_shard = (rank, world)

    # ----------------------------------------------------------------- hooks
    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The model the learner adapts (default: ``model`` itself)."""
        return model

    def build_rule(self) -> UpdateRule:
        """The update rule (called once ``self.model``, ``self.names`` and ``self.config`` are
        set)."""
        raise NotImplementedError

    def adapted_names(self) -> list[str]:
        """Names of the parameters the inner loop adapts (called once, after ``prepare_model``): the
        trainable ones except norm-layer affine parameters (unless ``adapt_norm``) and ``no_adapt``
        prefixes.  Override to keep meta-parameters a learner adds to the model out of adaptation
        (MT-net's T matrices)."""
        return adaptable_names(self.model, adapt_norm=self.config.adapt_norm,
                               exclude=self.config.no_adapt)

    def batch_metrics(self, result: TaskResult) -> dict[str, float]:
        """Extra float metrics of a training meta-batch from ``result.extras`` (default none); may
        raise (iMAML stops at a non-finite CG solve)."""
        return {}

    def task_objective(self, params: Params, buffers: Params, task: TaskTensors,
                       settings: TaskSettings) -> Objective:
        """The learner's training objective on one ``task``, from the meta-parameters ``params`` and
        the task's own ``buffers`` copy: the hook a learner whose meta-gradient is not MAML's
        implements (Reptile, iMAML).  Default, MAML's: ``settings.steps`` differentiable updates on
        the support set by ``settings.loop``, then the (MSL-weighted) query loss
        (``fewshot.learners.task.maml_objective``).

        It runs per task in the loop and once over all tasks under ``vmap``, so it must not branch
        on tensor values.  Evaluation never calls it: every learner is scored the same way
        (``fewshot.learners.task.evaluate_task``)."""
        return maml_objective(self.forward_mode, params, buffers, task, settings)

    def reference_param(self) -> torch.Tensor:
        """The first adapted parameter (its dtype and device are the ones rule tensors take)."""
        return dict(self.model.named_parameters())[self.names[0]]

    @property
    def default_eval_steps(self) -> int:
        """The adaptation steps ``evaluate`` runs in eval mode when not told (``eval_steps``, else
        ``inner_steps``)."""
        return (self.config.eval_steps if self.config.eval_steps is not None
                else self.config.inner_steps)

    def _default_steps(self, steps: int | None) -> int:
        if steps is None:
            steps = (self.config.inner_steps if self.training or self.config.eval_steps is None
                     else self.config.eval_steps)
        check_count(steps, "steps")
        return steps

    def first_order_at(self, epoch: int) -> bool:
        """Whether the meta-gradient at ``epoch`` is first order (the config's switch or the DA
        schedule)."""
        return self.config.first_order or epoch < self.config.first_order_epochs

    def step_weights(self, steps: int, epoch: int) -> list[float]:
        """Weights of the query loss after each of ``steps`` steps (MSL, or only the last step)."""
        if self.config.msl and epoch < self.config.msl_epochs:
            return msl_weights(steps, epoch, self.config.msl_epochs)
        return [0.0] * (steps - 1) + [1.0]

    def task_batching_for(self, device: torch.device | str,
                          elements_per_task: int | None = None) -> str:
        """``"loop"`` or ``"vmap"``: the path ``meta_loss``/``evaluate`` take for tasks on
        ``device`` (``ModelFacts.choose`` in ``fewshot.learners.batching`` gives the rules of
        ``"auto"``)."""
        return self._facts.choose(self.config.task_batching, self.config.checkpoint_steps, device,
                                  elements_per_task)

    def model_changed(self) -> None:
        """Read the model's layers again (batching facts, torch.nn batch norms): call it after
        changing ``learner.model``'s layers in place (``fewshot.training.calibrate.make_per_step``
        does)."""
        self._facts = ModelFacts.of(self.model)
        self._torch_bn = torch_batch_norms(self.model)

    @property
    def forward_mode(self) -> NormModeForward:
        """How the model runs under the config's ``bn_mode`` and per-step slots
        (``fewshot.learners.bn_forward``)."""
        return NormModeForward(self.model, self.config.bn_mode, self.config.per_step_bn,
                               self._torch_bn)

    def _noise(self, tasks: int, device: torch.device) -> torch.Tensor | None:
        """``[tasks, rule.noise_size]`` U(0, 1) draws from the ``noise_rng`` buffer (None for
        deterministic rules)."""
        if not self.rule.noise_size:
            return None
        return draw_noise(self.noise_rng, tasks, self.rule.noise_size, self.task_shard,
                          self.reference_param().dtype,
                          device)

    def loss_for(self, ways: int | None) -> LossFn:
        """The task loss (the user's ``loss_fn``, else the config's ``loss``; ``"auto"``:
        cross-entropy for classification, MSE for regression), on float32 outputs
        (``fewshot.precision``)."""
        fn = self.user_loss_fn
        if fn is None:
            kind = self.config.loss
            if kind == "auto":
                kind = "cross_entropy" if ways is not None else "mse"
            fn = F.cross_entropy if kind == "cross_entropy" else F.mse_loss
        return Float32Loss(fn)

    def inner_loop(self, loss_fn: LossFn) -> InnerLoop:
        """The learner's inner loop with support loss ``loss_fn``: its model, rule and adapted
        names."""
        return InnerLoop(self.model, self.rule, self.names, loss_fn,
                         per_step_bn=self.config.per_step_bn,
                         checkpoint=self.config.checkpoint_steps)

    def run_task(self, params: Params, buffers: Params, task: TaskTensors,
                 settings: TaskSettings) -> TaskResult:
        """One task's ``TaskResult``: ``evaluate_task`` in evaluation, else ``task_objective``
        scored by the query metric (what the task batching runs per task)."""
        if settings.evaluation:
            return evaluate_task(self.forward_mode, params, buffers, task, settings)
        return result_of(self.task_objective(params, buffers, task, settings), task, settings)

    def run_batch(self, batch: Any, settings: TaskSettings, *, sample: bool,
                  backward: bool = False) -> TaskResult:
        """Every task of ``batch`` under ``settings`` (``task_settings``), in the loop or under vmap
        (``task_batching_for``), stacked into one ``TaskResult``; the buffers are not written back.
        ``sample``: draw the rule's per-task noise; ``backward``: back-propagate the mean objective.
        Training stops at a non-finite support loss (``AdaptationError``); evaluation reports it per
        task instead.  ``meta_loss`` and ``evaluate`` are built on it; batch-norm calibration reads
        the per-task buffers it returns."""
        check_task(batch.support_x, batch.support_y, batch.query_x, batch.query_y, batch.ways,
                   batched=True)
        self._out_check.check(self.model, batch.support_x[0], batch.ways)
        params, buffers = split_state(self.model)
        noise = self._noise(len(batch), batch.support_x.device) if sample else None

        def one(bufs: Params, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor,
                qy: torch.Tensor,
                task_noise: torch.Tensor | None) -> TaskResult:
            return self.run_task(params, bufs, TaskTensors(sx, sy, qx, qy, task_noise), settings)

        with norm_training(self.model, self.forward_mode.batch_statistics(self.training)):
            per_task = (batch.support_x[0].numel() + batch.query_x[0].numel())
            runner = run_vmap if self.task_batching_for(batch.support_x.device,
                                                        per_task) == "vmap" else run_loop
            result = runner(one, buffers, batch, noise, backward=backward)
        if settings.evaluation:
            warn_if_rising(self._warned_rise, result.support_losses, settings.steps,
                           self.config.inner_steps)
        else:
            raise_if_nonfinite(result.support_losses, settings.steps)
        return result

    def task_settings(self, ways: int | None, steps: int, *, first_order: bool = True,
                      weights: list[float] | None = None, evaluation: bool = False,
                      best: bool = False) -> TaskSettings:
        """What every task of a meta-batch shares (``TaskSettings``) with this learner's inner loop
        and task loss; ``weights`` default to the last step's query loss alone."""
        weights = [0.0] * (steps - 1) + [1.0] if weights is None else weights
        return TaskSettings(steps, first_order, tuple(weights),
                            self.inner_loop(self.loss_for(ways)), ways,
                            evaluation, best)

    # ----------------------------------------------------------------- public API
    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, *, steps: int | None = None,
              epoch: int = 0, ways: int | None = None,
              best_step: bool | None = None) -> AdaptedModel:
        """The model adapted to one task: ``adapted = learner.adapt(sx, sy); adapted(x)``
        (``AdaptedModel``; its ``params`` are differentiable per config and ``epoch``).

        Buffers are used through a copy (never written).  Integer labels mean classification with
        ``ways = max label + 1`` unless ``ways`` is given.  Rules that sample per-task noise use
        their deterministic form here (as in ``evaluate``).  ``best_step`` (default: the config's):
        when the support loss ends above its lowest value, the parameters of the lowest-loss step
        are used (``adapted.steps`` says which) rather than the diverged last ones.
        """
        check_input(self, support_x, "adapt")
        if ways is None and not support_y.is_floating_point() and support_y.numel():
            ways = int(support_y.max()) + 1  # integer labels: classification
        check_task(support_x, support_y, None, None, ways, batched=False)
        if ways is not None:
            self._out_check.check_at_least(self.model, support_x, ways)
        steps = self._default_steps(steps)
        best = self.config.best_step if best_step is None else best_step
        with norm_training(self.model, self.forward_mode.batch_statistics(self.training)):
            adapted, used, losses = adapt_task(self.forward_mode,
                                               self.inner_loop(self.loss_for(ways)), support_x,
                                               support_y, steps=steps,
                                               first_order=self.first_order_at(epoch),
                                               best=best)
        if not (best and bool(losses[used].isfinite())):
            raise_if_nonfinite(losses, steps)
        warn_if_rising(self._warned_rise, losses[None], steps, self.config.inner_steps)
        buffers = split_state(self.model)[1]
        # "support" mode only
        stats = self.forward_mode.support_statistics(adapted, buffers, support_x, used)
        return AdaptedModel(self, adapted, steps=used, steps_run=steps,
                            support_losses=losses.detach(),
                            statistics=stats)

    def predict(self, x: torch.Tensor, params: Params | AdaptedModel, *, steps: int | None = None,
                support_x: torch.Tensor | None = None) -> torch.Tensor:
        """Model outputs on ``x`` with (adapted) ``params``: the functional layer under
        ``AdaptedModel``.

        Given an ``AdaptedModel`` (what ``adapt`` returns) this is ``adapted(x)``.  Given a
        parameter dict (library code), ``steps`` = how many updates ``params`` had (selects the
        per-step BN slot; default as in ``adapt``) and ``support_x`` = the examples ``params`` were
        adapted on, needed in ``bn_mode="support"`` (they give the batch-norm statistics, by a
        forward of them ahead of ``x``)."""
        check_input(self, x, "predict")
        forward = self.forward_mode
        if isinstance(params, AdaptedModel):
            return forward.with_statistics(params.params, params.statistics, params.steps, x,
                                           self.training)
        steps = self._default_steps(steps)
        _, buffers = split_state(self.model)
        with norm_training(self.model, forward.batch_statistics(self.training)):
            return forward.query(params, copy_buffers(buffers), support_x, x,
                                 forward.bn_step(steps))

    def meta_loss(self, batch, *, epoch: int = 0, backward: bool = False) -> MetaOutput:
        """Mean over tasks of the (MSL-weighted) query loss after adaptation, differentiable w.r.t.
        ``self.parameters()``; in train mode the BN buffers are updated (mean over tasks).

        ``backward=True`` back-propagates it too (the loss returned is then detached; on the
        per-task loop task by task, so peak memory is one task's:
        ``fewshot.learners.batching.run_loop``); the gradients accumulated into ``.grad`` are the
        same up to floating-point summation order. Usage: ``out = learner.meta_loss(batch, epoch=e);
        out.loss.backward()``"""
        steps = self._default_steps(None)
        settings = self.task_settings(batch.ways, steps, first_order=self.first_order_at(epoch),
                                      weights=self.step_weights(steps, epoch))
        result = self.run_batch(batch, settings, sample=self.training, backward=backward)
        extra = self.batch_metrics(result)
        if self.training and self.config.bn_mode != "frozen":
            write_back(self.model, result.buffers)
        return MetaOutput(result.total.mean(), {**result.metrics(batch.ways is not None), **extra})

    def meta_backward(self, batch, *, epoch: int = 0) -> MetaOutput:
        """``meta_loss(batch, epoch=epoch, backward=True)``: the meta-loss, back-propagated task by
        task."""
        return self.meta_loss(batch, epoch=epoch, backward=True)

    def evaluate(self, batch, *, steps: int | None = None,
                 best_step: bool | None = None) -> dict[str, torch.Tensor]:
        """Per-task query ``accuracy`` (classification) or ``mse`` (regression) and ``loss`` after
        ``steps`` adaptation steps (default ``eval_steps`` in eval mode); writes no buffers and
        draws no noise (rules that sample per task use their deterministic form), so it is
        reproducible.

        Also per task: ``step``, the step whose parameters predicted (``best_step``, default the
        config's: the lowest-support-loss step when adaptation diverged, else ``steps``), and
        ``nonfinite_at``, the first step whose support loss was not finite (-1: none).  A divergence
        never raises here: a task whose predictions are not finite scores accuracy 0 (mse inf)."""
        steps = self._default_steps(steps)
        best = self.config.best_step if best_step is None else best_step
        # the buffer copies are discarded and, unless the rule takes Hessian-vector products,
        # nothing is
        # differentiated twice: native batch norm under vmap (its batch rule's second order is
        # wrong)
        with torch.no_grad(), native_kernel_under_vmap(not self.rule.needs_hvp):
            settings = self.task_settings(batch.ways, steps, evaluation=True, best=best)
            result = self.run_batch(batch, settings, sample=False)
        return result.scores(batch.ways is not None)


def _given_rule(rule: Any, learner: GradientLearner) -> UpdateRule:
    """``rule=`` given to a learner (replacing its ``build_rule``), bound to the learner's adapted
    names."""
    if not isinstance(rule, UpdateRule):
        raise ConfigError(
            "rule must be a fewshot.rules.UpdateRule (e.g. Adam(lr=0.01)), got "
            f"{type(rule).__name__}")
    return rule.bind(learner.names, learner.reference_param())

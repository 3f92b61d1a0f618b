"""The learner base: what every gradient-based meta-learner shares, and the checks on ``TaskBatch``es.

``GradientLearner`` owns everything that is not specific to one method: loss choice, batch-norm modes
and per-step BN, per-task buffer copies and their write-back, loop/vmap task batching, the MSL and
derivative-order schedules, the non-finite check, the per-task noise generator, and the public API
(``adapt``/``predict``/``meta_loss``/``evaluate``).  A learner (MAML, Meta-SGD, MT-net, the LSTM
meta-learner) is a subclass with its config dataclass and hooks: ``build_rule`` (its update rule, a
``fewshot.rules.UpdateRule``) and optionally ``prepare_model`` (e.g. MT-net's T layers) and
``adapted_names`` (e.g. keeping those T layers out of adaptation).

Batch norm (see docs/batchnorm.md): ``bn_mode`` = ``"transductive"`` (batch statistics always, the
original MAML), ``"support"`` (batch statistics of the task's support set, also for its queries, so a
query's output does not depend on the other queries), ``"running"`` (batch statistics + running updates
in train mode, stored statistics in eval mode) or ``"frozen"`` (stored statistics always, never updated).
Each task runs on its own copy of the buffers; after a training-mode ``meta_loss`` the module's
floating buffers become the mean over tasks of the updated copies.  ``adapt``/``predict``/``evaluate``
never write buffers.

Divergence warning: ``adapt`` and ``evaluate`` also compute the support loss after the last update and
warn (an ``AdaptationWarning``, once per learner and step count) when its mean over the tasks exceeds
``RISE_FACTOR`` times the mean support loss before the first update: adaptation made the model worse
on the very examples it adapted to (too many steps for the inner learning rate it was trained with,
or a too large rate), so its accuracy would otherwise fall silently.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from ..checks import check_count
from ..errors import AdaptationError, AdaptationWarning, ConfigError, FewshotError
from ..functional import (
    LossFn,
    Params,
    adaptable_names,
    call,
    choose_best,
    copy_buffers,
    first_nonfinite_step,
    inner_loop,
    msl_weights,
    split_state,
)
from ..nn.batchnorm import (
    Statistics,
    StepBatchNorm,
    given_statistics,
    native_kernel_under_vmap,
    norm_training,
    per_step_batchnorm,
    record_statistics,
    statistics_from,
)
from ..precision import float32_outputs
from ..rules.base import UpdateRule, under_transform
from .adapted import AdaptedModel
from .inputs import check_input

BN_MODES = ("transductive", "support", "running", "frozen")
LOSSES = ("auto", "cross_entropy", "mse")
TASK_BATCHING = ("auto", "loop", "vmap")
RISE_FACTOR = 1.1  # warn when the final support loss is more than 10% above the loss before adapting
# leaf modules for which the batched (vmap) path is faster than the loop on CPU (bench/maml_bench.py)
# auto task batching on CPU: vmap when a task's support + query inputs have at most this many elements
# (5-way 1-shot 28x28 with up to ~5 queries per class); larger tasks run faster in the per-task loop
VMAP_MAX_ELEMENTS_CPU = 25_000
_VMAP_FRIENDLY_CPU = (nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SiLU,
                      nn.Identity, nn.Flatten, StepBatchNorm)


class TaskResult(NamedTuple):
    """One task's (or, stacked, a meta-batch's) outcome: the (MSL-weighted) query ``total`` that is
    differentiated, the last query loss, the metric, the support losses ``[steps + 1]`` (before each
    update, then after the last when computed), the updated buffer copies, the ``step`` whose
    parameters made the predictions, and ``extras``: per-task diagnostics a learner adds (iMAML's CG
    residual), stacked like the rest and read by ``GradientLearner.batch_metrics``."""

    total: torch.Tensor
    query_loss: torch.Tensor
    metric: torch.Tensor
    support_losses: torch.Tensor
    buffers: Params
    step: torch.Tensor
    extras: Params = {}  # never mutated: a learner that adds diagnostics builds its own dict


@dataclass
class MetaOutput:
    """The meta-loss of a meta-batch (a differentiable scalar) and float metrics for logging."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def check_task(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor | None,
               query_y: torch.Tensor | None, ways: int | None, *, batched: bool) -> None:
    """Raise ``FewshotError`` (one line) if a task's (or meta-batch's) tensors do not fit together."""
    lead = 2 if batched else 1
    what = "TaskBatch" if batched else "task"
    pairs = [("support", support_x, support_y)]
    if query_x is not None and query_y is not None:
        pairs.append(("query", query_x, query_y))
    for name, x, y in pairs:
        if x.dim() < lead or y.dim() < lead:
            raise FewshotError(f"{what} {name} tensors have too few dims (x {tuple(x.shape)}, y {tuple(y.shape)}): "
                               f"expected leading {'[B, n]' if batched else '[n]'}")
        if x.shape[:lead] != y.shape[:lead]:
            raise FewshotError(f"{what} {name}_x {tuple(x.shape)} and {name}_y {tuple(y.shape)} "
                               "disagree on the leading dims: give one target per example")
        if x.shape[lead - 1] == 0:
            raise FewshotError(f"{what} {name} set is empty: give at least one example")
        if ways is not None:
            if y.is_floating_point() or y.dtype == torch.bool:
                raise FewshotError(f"{what} {name}_y must be integer class labels for classification (ways={ways}), "
                                   f"got {y.dtype}; use ways=None for regression")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= ways):
                raise FewshotError(f"{what} {name}_y labels must be in 0..{ways - 1} (ways={ways}), "
                                   f"got {int(y.min())}..{int(y.max())}: relabel classes per task")
        elif not y.is_floating_point():
            raise FewshotError(f"{what} {name}_y is {y.dtype} but ways=None means regression: "
                               "give float targets or set ways")
    if query_x is not None and query_y is not None:  # the query pair was checked above
        sx, qx = support_x, query_x
        if sx.shape[lead:] != qx.shape[lead:] or (batched and sx.shape[0] != qx.shape[0]):
            raise FewshotError(f"support_x {tuple(sx.shape)} and query_x {tuple(qx.shape)} do not match: "
                               "support and query examples must have the same shape (and the same number of tasks)")
        if support_y.shape[lead:] != query_y.shape[lead:]:
            raise FewshotError(f"support_y {tuple(support_y.shape)} and query_y {tuple(query_y.shape)} "
                               "do not match beyond the example dim")


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
    - ``bn_mode``: ``"transductive"`` | ``"support"`` | ``"running"`` | ``"frozen"`` (module docstring).
    - ``adapt_norm``: also adapt normalisation-layer affine parameters (default: meta-learned only);
      ``no_adapt``: name prefixes of parameters that are meta-learned but never adapted.
    - ``loss``: ``"auto"`` (cross-entropy when ``batch.ways`` is set, else MSE) | ``"cross_entropy"`` | ``"mse"``.
    - ``task_batching``: ``"loop"`` (per task), ``"vmap"`` (one batched computation) or ``"auto"``
      (``GradientLearner.task_batching_for``).
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


class GradientLearner(nn.Module):
    """Base of every learner that adapts a model's parameters by a differentiable update rule.

    Subclasses set ``config_class`` and implement ``build_rule``; ``prepare_model`` may rewrite the
    model first, ``adapted_names`` narrow the adapted parameters.  ``rule=`` replaces ``build_rule``'s
    rule (e.g. ``MAML(model, cfg, rule=Adam(lr=0.01))``); one made without names is bound to the adapted
    ones.  Meta-parameters are ``learner.parameters()``: the model's and the rule's.
    """

    config_class: type[LearnerConfig] = LearnerConfig
    noise_rng: torch.Tensor  # buffer registered in __init__ when the rule draws noise

    def __init__(self, model: nn.Module, config: LearnerConfig | None = None, *,
                 loss_fn: LossFn | None = None, rule: UpdateRule | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{name} needs an nn.Module, got {type(model).__name__}")
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{name} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.user_loss_fn = loss_fn
        if config.per_step_bn:
            per_step_batchnorm(model, config.bn_slots or max(config.inner_steps, config.eval_steps or 0) + 1)
        self.model = self.prepare_model(model)
        self.names = self.adapted_names()
        # torch.nn batch-norm layers, found once: bn_mode="support" cannot take statistics from rows with them
        self._torch_bn = [n for n, m in self.model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not self.names:
            raise ConfigError(f"{name}: the model has no trainable parameters to adapt: give it parameters with "
                              "requires_grad=True (or loosen no_adapt/adapt_norm)")
        try:
            self.rule = self.build_rule() if rule is None else _given_rule(rule, self)
        except RuntimeError as exc:  # e.g. a finite Python float that overflows the model's dtype
            if "overflow" not in str(exc):
                raise
            raise ConfigError(f"{name}: a setting of {type(config).__name__} does not fit the model's dtype "
                              f"{self.reference_param().dtype} ({exc}): use a smaller value") from None
        if self.rule.noise_size:
            gen = torch.Generator().manual_seed(config.seed)
            self.register_buffer("noise_rng", gen.get_state())
        self._out_check: dict[tuple, int] = {}
        self.task_shard = (0, 1)
        self._warned_rise: set[int] = set()  # step counts already warned about (warn once each)

    def shard_tasks(self, rank: int, world: int) -> None:
        """Declare that each meta-batch this learner sees is part ``rank`` of ``world`` equal parts of a
        larger one (data-parallel training, ``fewshot.distributed``): per-task noise is then drawn for the
        whole meta-batch and this part's rows taken, so every process's generator stays in step and the
        union of the parts gets the noise one process would draw."""
        if not 0 <= rank < world:
            raise ConfigError(f"shard rank must be in 0..{world - 1}, got {rank}")
        self.task_shard = (rank, world)

    # ----------------------------------------------------------------- hooks
    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The model the learner adapts (default: ``model`` itself)."""
        return model

    def build_rule(self) -> UpdateRule:
        """The update rule (called once ``self.model``, ``self.names`` and ``self.config`` are set)."""
        raise NotImplementedError

    def adapted_names(self) -> list[str]:
        """Names of the parameters the inner loop adapts (called once, after ``prepare_model``): the
        trainable ones except norm-layer affine parameters (unless ``adapt_norm``) and ``no_adapt``
        prefixes.  Override to keep meta-parameters a learner adds to the model out of adaptation
        (MT-net's T matrices)."""
        return adaptable_names(self.model, adapt_norm=self.config.adapt_norm, exclude=self.config.no_adapt)

    def batch_metrics(self, result: TaskResult) -> dict[str, float]:
        """Extra float metrics of a training meta-batch from ``result.extras`` (default none); may raise
        (iMAML stops at a non-finite CG solve)."""
        return {}

    def reference_param(self) -> torch.Tensor:
        """The first adapted parameter (its dtype and device are the ones rule tensors take)."""
        return dict(self.model.named_parameters())[self.names[0]]

    # ----------------------------------------------------------------- helpers
    def _loss_fn(self, ways: int | None) -> LossFn:
        """The task loss, on float32 outputs (under bf16 autocast the logits are cast first: fewshot.precision)."""
        fn = self.user_loss_fn
        if fn is None:
            kind = self.config.loss
            if kind == "auto":
                kind = "cross_entropy" if ways is not None else "mse"
            fn = F.cross_entropy if kind == "cross_entropy" else F.mse_loss
        return _Float32Loss(fn)

    @property
    def default_eval_steps(self) -> int:
        """The adaptation steps ``evaluate`` runs in eval mode when not told (``eval_steps``, else ``inner_steps``)."""
        return self.config.eval_steps if self.config.eval_steps is not None else self.config.inner_steps

    def _default_steps(self, steps: int | None) -> int:
        if steps is None:
            steps = (self.config.inner_steps if self.training or self.config.eval_steps is None
                     else self.config.eval_steps)
        check_count(steps, "steps")
        return steps

    def _bn_step(self, t: int) -> int:
        return t if self.config.per_step_bn else 0

    def _norm_flag(self) -> bool:
        mode = self.config.bn_mode
        return True if mode in ("transductive", "support") else (self.training if mode == "running" else False)

    def _query_forward(self, params: Params, buffers: Params, sx: torch.Tensor | None, qx: torch.Tensor,
                       step: int) -> torch.Tensor:
        """The model's outputs on queries ``qx`` after ``step`` updates.  In ``"support"`` mode the
        support examples ``sx`` go through the same forward ahead of the queries and every batch-norm
        layer takes its statistics from them alone (``statistics_from``), so a query is normalised as
        the support set was at that step and never by the other queries."""
        return self._joint_forward(params, buffers, sx, qx, step)[1]

    def _joint_forward(self, params: Params, buffers: Params, sx: torch.Tensor | None, qx: torch.Tensor,
                       step: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``(support outputs or None, query outputs)``: in ``"support"`` mode the one forward of
        ``_query_forward`` also gives the support outputs at that step, as a forward of ``sx`` alone
        would (same statistics), so callers that need both need not run the support set again."""
        if self.config.bn_mode != "support":
            return None, call(self.model, params, buffers, qx, step=step)
        if sx is None:
            raise FewshotError("bn_mode='support' normalises queries with the support set's batch statistics: "
                               "predict with what learner.adapt returns (adapted(x)), or pass the support "
                               "examples, learner.predict(x, params, support_x=support_x)")
        self._check_support_mode()
        n = sx.shape[0]
        with statistics_from(n):
            out = call(self.model, params, buffers, torch.cat([sx, qx]), step=step)
        return out[:n], out[n:]

    def _check_support_mode(self) -> None:
        if self._torch_bn:
            raise ConfigError(f"bn_mode='support' needs fewshot.nn.StepBatchNorm layers, but '{self._torch_bn[0]}' "
                              "is a torch.nn batch norm: convert the model with fewshot.per_step_batchnorm(model, 1)")

    def first_order_at(self, epoch: int) -> bool:
        """Whether the meta-gradient at ``epoch`` is first order (the config's switch or the DA schedule)."""
        return self.config.first_order or epoch < self.config.first_order_epochs

    def step_weights(self, steps: int, epoch: int) -> list[float]:
        """Weights of the query loss after each of ``steps`` steps (MSL, or only the last step)."""
        if self.config.msl and epoch < self.config.msl_epochs:
            return msl_weights(steps, epoch, self.config.msl_epochs)
        return [0.0] * (steps - 1) + [1.0]

    def task_batching_for(self, device: torch.device | str, elements_per_task: int | None = None) -> str:
        """``"loop"`` or ``"vmap"``: the path ``meta_loss``/``evaluate`` take for tasks on ``device``.

        ``"auto"``: the loop for models with torch ``BatchNorm`` (wrong second-order gradients under
        vmap) or dropout (random ops under vmap); otherwise vmap on accelerators, and on CPU vmap for
        MLP-like models or when a task is small (support + query inputs of at most
        ``VMAP_MAX_ELEMENTS_CPU`` elements), where batching the tasks' small operations wins; the loop
        for larger tasks, whose per-task operations are already big.  The crossover was measured with
        bench/peers.py-style runs (bench/NOTES.md).
        """
        mode = self.config.task_batching
        modules = list(self.model.modules())
        has_torch_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules)
        if mode == "vmap" and has_torch_bn:
            raise ConfigError("task_batching='vmap' gives wrong second-order gradients through torch.nn BatchNorm "
                              "layers (PyTorch batch rule): use task_batching='loop', or fewshot.nn.StepBatchNorm2d / "
                              "per_step_batchnorm(model, 1)")
        if mode != "auto":
            return mode
        if self.config.checkpoint_steps and torch.is_grad_enabled():  # recomputation runs on the loop only
            return "loop"
        if has_torch_bn or any(isinstance(m, nn.modules.dropout._DropoutNd) for m in modules):
            return "loop"
        if torch.device(device).type != "cpu":
            return "vmap"
        leaves = [m for m in modules if not list(m.children())]
        if leaves and all(isinstance(m, _VMAP_FRIENDLY_CPU) for m in leaves):
            return "vmap"
        return "vmap" if elements_per_task is not None and elements_per_task <= VMAP_MAX_ELEMENTS_CPU else "loop"

    def _noise(self, tasks: int, device: torch.device) -> torch.Tensor | None:
        """``[tasks, rule.noise_size]`` U(0, 1) draws (None for deterministic rules); the generator
        state lives in the ``noise_rng`` buffer, so it is saved in checkpoints and a resumed run draws
        the same noise."""
        if not self.rule.noise_size:
            return None
        gen = torch.Generator()
        gen.set_state(self.noise_rng.cpu())
        rank, world = self.task_shard
        draws = torch.rand(tasks * world, self.rule.noise_size, generator=gen, dtype=self.reference_param().dtype)
        self.noise_rng.copy_(gen.get_state())
        return draws[rank * tasks:(rank + 1) * tasks].to(device)

    def _check_outputs(self, x: torch.Tensor, ways: int | None) -> None:
        """One-line error when the model's output width does not fit ``ways`` (checked once per input
        shape with a one-example forward, so the inner loop never fails with an IndexError)."""
        if ways is None:
            return
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        width = self._out_check.get(key)
        if width is None:
            params, buffers = split_state(self.model)
            with torch.no_grad(), norm_training(self.model, False):
                out = call(self.model, params, copy_buffers(buffers), x[:1], step=0)
            width = out.shape[-1] if out.dim() >= 2 else -1
            self._out_check[key] = width
        if width != ways:
            raise FewshotError(f"the model outputs {width if width >= 0 else 'no class'} scores per example but the "
                               f"tasks are {ways}-way: give the model a {ways}-way head "
                               "(e.g. Conv4(channels, ways)) or sample tasks with as many ways as the head has")

    # ----------------------------------------------------------------- one task
    def _task(self, params: Params, buffers: Params, sx, sy, qx, qy, noise, *, steps: int, first_order: bool,
              weights: list[float], loss_fn: LossFn, ways: int | None, final_loss: bool = False,
              best: bool = False) -> TaskResult:
        res = inner_loop(self.model, params, buffers, sx, sy, loss_fn=loss_fn, steps=steps, rule=self.rule,
                         names=self.names, noise=noise, first_order=first_order,
                         per_step_bn=self.config.per_step_bn, keep=[t for t, w in enumerate(weights, 1) if w],
                         checkpoint=self.config.checkpoint_steps, track_best=best)
        bufs = res.buffers
        step = torch.full((), steps, dtype=torch.long, device=sx.device)
        total = out = q_loss = s_final = None
        if best:  # evaluation: the query outputs of the step choose_best picks
            assert res.best is not None
            s_final = self._final_support_loss(res, sx, sy, loss_fn, steps)
            chosen = choose_best(res.best, res.at(steps), s_final, steps)
            out = self._forward_at_step({**res.at(steps), **chosen.params}, copy_buffers(bufs), sx, qx,
                                        chosen.step, steps)
            total = q_loss = loss_fn(out, qy)
            step = chosen.step
        else:
            for t in range(1, steps + 1):
                if weights[t - 1] == 0.0:
                    continue
                bufs = copy_buffers(bufs)
                s_out, out = self._joint_forward(res.at(t), bufs, sx, qx, self._bn_step(t))
                if final_loss and t == steps and s_out is not None:  # support mode: the final support loss for free
                    s_final = loss_fn(s_out, sy).detach().reshape(1)
                q_loss = loss_fn(out, qy)
                total = weights[t - 1] * q_loss if total is None else total + weights[t - 1] * q_loss
        assert out is not None and q_loss is not None and total is not None  # the last weight is never 0
        s_losses = res.losses
        if final_loss:
            s_final = self._final_support_loss(res, sx, sy, loss_fn, steps) if s_final is None else s_final
            s_losses = torch.cat([res.losses, s_final])
        out = float32_outputs(out)
        if ways is not None:
            metric = (out.argmax(-1) == qy).to(out.dtype).mean()
        else:
            metric = F.mse_loss(out, qy) if out.shape == qy.shape else q_loss
        return TaskResult(total, q_loss.detach(), metric.detach(), s_losses, bufs, step)

    def _forward_at_step(self, params: Params, buffers: Params, sx: torch.Tensor, qx: torch.Tensor,
                         step: torch.Tensor, steps: int) -> torch.Tensor:
        """Query outputs with ``params``, which had ``step`` updates (a tensor: it differs per task).  Only
        per-step batch norm cares which step it was; under ``vmap`` the slot cannot follow a per-task value,
        so every slot's outputs are computed and each task takes its own."""
        if not self.config.per_step_bn:
            return self._query_forward(params, buffers, sx, qx, 0)
        if not under_transform():
            return self._query_forward(params, buffers, sx, qx, int(step))
        out = None
        for t in range(steps + 1):
            at_t = self._query_forward(params, copy_buffers(buffers), sx, qx, t)
            out = at_t if out is None else torch.where(step == t, at_t, out)
        assert out is not None
        return out

    def _final_support_loss(self, res, sx, sy, loss_fn: LossFn, steps: int) -> torch.Tensor:
        """``[1]``: the support loss after the last update (not needed for learning; it shows divergence)."""
        with torch.no_grad():
            out = call(self.model, res.at(steps), copy_buffers(res.buffers), sx, step=self._bn_step(steps))
            return loss_fn(out, sy).reshape(1)

    def _warn_if_rising(self, losses: torch.Tensor, steps: int) -> None:
        """One ``AdaptationWarning`` per step count when ``losses [tasks, steps + 1]`` (support loss before
        each update, then after the last) end more than ``RISE_FACTOR`` above where they started."""
        first, last = float(losses[:, 0].mean()), float(losses[:, -1].mean())
        if last > RISE_FACTOR * first and steps not in self._warned_rise:
            self._warned_rise.add(steps)
            warnings.warn(f"the support loss rose during adaptation, from {first:.3g} before the first inner step "
                          f"to {last:.3g} after step {steps} (mean over {losses.shape[0]} tasks): the inner loop "
                          f"diverges; use fewer steps (this learner trained with {self.config.inner_steps}) or a "
                          "lower inner learning rate", AdaptationWarning, stacklevel=4)

    def _run_batch(self, batch, *, steps: int, first_order: bool, weights: list[float], sample: bool,
                   backward: bool = False, final_loss: bool = False, best: bool = False) -> TaskResult:
        """Every task of ``batch`` (stacked ``TaskResult``).  Training (``final_loss`` False) stops at a
        non-finite support loss (``AdaptationError``); evaluation reports it per task instead."""
        check_task(batch.support_x, batch.support_y, batch.query_x, batch.query_y, batch.ways, batched=True)
        self._check_outputs(batch.support_x[0], batch.ways)
        loss_fn = self._loss_fn(batch.ways)
        params, buffers = split_state(self.model)
        kw: dict[str, Any] = dict(steps=steps, first_order=first_order, weights=weights, loss_fn=loss_fn,
                                  ways=batch.ways, final_loss=final_loss, best=best)
        b = len(batch)
        noise = self._noise(b, batch.support_x.device) if sample else None
        with norm_training(self.model, self._norm_flag()):
            per_task = (batch.support_x[0].numel() + batch.query_x[0].numel())
            if self.task_batching_for(batch.support_x.device, per_task) == "vmap":
                batched = {k: v.unsqueeze(0).expand(b, *v.shape).clone() for k, v in buffers.items()}

                def one(bufs, sx, sy, qx, qy, nz):
                    return self._task(params, bufs, sx, sy, qx, qy, nz, **kw)

                result = vmap(one, in_dims=(0, 0, 0, 0, 0, None if noise is None else 0))(
                    batched, batch.support_x, batch.support_y, batch.query_x, batch.query_y, noise)
                if backward:
                    result.total.mean().backward()
                    result = result._replace(total=result.total.detach())
            else:
                outs = []
                for i in range(b):
                    out = self._task(params, copy_buffers(buffers), batch.support_x[i], batch.support_y[i],
                                     batch.query_x[i], batch.query_y[i], None if noise is None else noise[i], **kw)
                    if backward:  # free this task's graph before the next task builds its own
                        (out.total / b).backward()
                        out = out._replace(total=out.total.detach())
                    outs.append(out)
                stack = lambda f: torch.stack([getattr(o, f) for o in outs])  # noqa: E731
                result = TaskResult(stack("total"), stack("query_loss"), stack("metric"), stack("support_losses"),
                                    {k: torch.stack([o.buffers[k] for o in outs]) for k in buffers}, stack("step"),
                                    {k: torch.stack([o.extras[k] for o in outs]) for k in outs[0].extras})
        if final_loss:
            self._warn_if_rising(result.support_losses, steps)
        else:
            _raise_if_nonfinite(result.support_losses, steps)
        return result

    def _write_back(self, new_bufs: Params) -> None:
        with torch.no_grad():
            for name, buf in self.model.named_buffers():
                new = new_bufs[name]
                buf.copy_(new.mean(0) if buf.is_floating_point() else new[0])

    # ----------------------------------------------------------------- public API
    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, *, steps: int | None = None,
              epoch: int = 0, ways: int | None = None, best_step: bool | None = None) -> AdaptedModel:
        """The model adapted to one task: ``adapted = learner.adapt(sx, sy); adapted(x)`` (``AdaptedModel``;
        its ``params`` are differentiable per config and ``epoch``).

        Buffers are used through a copy (never written).  Integer labels mean classification with
        ``ways = max label + 1`` unless ``ways`` is given.  Rules that sample per-task noise use their
        deterministic form here (as in ``evaluate``).  ``best_step`` (default: the config's): when the
        support loss ends above its lowest value, the parameters of the lowest-loss step are used
        (``adapted.steps`` says which) rather than the diverged last ones.
        """
        check_input(self, support_x, "adapt")
        if ways is None and not support_y.is_floating_point() and support_y.numel():
            ways = int(support_y.max()) + 1  # integer labels: classification
        check_task(support_x, support_y, None, None, ways, batched=False)
        if ways is not None:
            self._check_outputs_at_least(support_x, ways)
        steps = self._default_steps(steps)
        best = self.config.best_step if best_step is None else best_step
        params, buffers = split_state(self.model)
        loss_fn = self._loss_fn(ways)
        with norm_training(self.model, self._norm_flag()):
            res = inner_loop(self.model, params, buffers, support_x, support_y, loss_fn=loss_fn,
                             steps=steps, rule=self.rule, names=self.names, first_order=self.first_order_at(epoch),
                             per_step_bn=self.config.per_step_bn, keep=(), checkpoint=self.config.checkpoint_steps,
                             track_best=best)
            final = self._final_support_loss(res, support_x, support_y, loss_fn, steps)
        losses = torch.cat([res.losses, final])
        used, adapted = steps, res.at(steps)
        if best:
            assert res.best is not None
            chosen = choose_best(res.best, adapted, final, steps)
            used, adapted = int(chosen.step), {**adapted, **chosen.params}
        if not (best and bool(losses[used].isfinite())):
            _raise_if_nonfinite(losses, steps)
        self._warn_if_rising(losses[None], steps)
        stats: Statistics | None = None
        if self.config.bn_mode == "support":  # the support set's statistics at the step used, taken once
            self._check_support_mode()
            stats = {}
            with norm_training(self.model, True), record_statistics(stats):
                call(self.model, adapted, copy_buffers(buffers), support_x, step=self._bn_step(used))
        return AdaptedModel(self, adapted, steps=used, steps_run=steps, support_losses=losses.detach(),
                            statistics=stats)

    def _predict_adapted(self, adapted: AdaptedModel, x: torch.Tensor) -> torch.Tensor:
        """``adapted(x)``: the model with ``adapted.params`` (and its support statistics, if any) on ``x``."""
        check_input(self, x, "predict")
        _, buffers = split_state(self.model)
        with norm_training(self.model, self._norm_flag()):
            if adapted.statistics is None:
                return call(self.model, adapted.params, copy_buffers(buffers), x, step=self._bn_step(adapted.steps))
            with given_statistics(adapted.statistics):
                return call(self.model, adapted.params, copy_buffers(buffers), x, step=self._bn_step(adapted.steps))

    def _check_outputs_at_least(self, x: torch.Tensor, ways: int) -> None:
        try:
            self._check_outputs(x, ways)
        except FewshotError:
            width = self._out_check[(tuple(x.shape[1:]), x.dtype, x.device)]
            if width < ways:  # a task may use fewer classes than the head has
                raise FewshotError(f"labels go up to {ways - 1} but the model outputs {max(width, 0)} scores per "
                                   f"example: relabel the task's classes 0..{max(width, 1) - 1} or give the model "
                                   f"a {ways}-way head") from None

    def predict(self, x: torch.Tensor, params: Params | AdaptedModel, *, steps: int | None = None,
                support_x: torch.Tensor | None = None) -> torch.Tensor:
        """Model outputs on ``x`` with (adapted) ``params``: the functional layer under ``AdaptedModel``.

        Given an ``AdaptedModel`` (what ``adapt`` returns) this is ``adapted(x)``.  Given a parameter
        dict (library code), ``steps`` = how many updates ``params`` had (selects the per-step BN slot;
        default as in ``adapt``) and ``support_x`` = the examples ``params`` were adapted on, needed in
        ``bn_mode="support"`` (they give the batch-norm statistics, by a forward of them ahead of ``x``)."""
        if isinstance(params, AdaptedModel):
            return params(x)
        check_input(self, x, "predict")
        steps = self._default_steps(steps)
        _, buffers = split_state(self.model)
        with norm_training(self.model, self._norm_flag()):
            return self._query_forward(params, copy_buffers(buffers), support_x, x, self._bn_step(steps))

    def meta_loss(self, batch, *, epoch: int = 0, backward: bool = False) -> MetaOutput:
        """Mean over tasks of the (MSL-weighted) query loss after adaptation, differentiable w.r.t.
        ``self.parameters()``; in train mode the BN buffers are updated (mean over tasks).

        ``backward=True`` back-propagates it too (the loss returned is then detached): on the per-task
        loop each task's graph is back-propagated and freed before the next task runs, so peak memory
        is that of one task instead of the whole meta-batch; the gradients accumulated into ``.grad`` are
        the same up to floating-point summation order.  The vmap path computes all tasks at once anyway
        and back-propagates the mean.
        Usage: ``out = learner.meta_loss(batch, epoch=e); out.loss.backward()``"""
        steps = self._default_steps(None)
        result = self._run_batch(batch, steps=steps, first_order=self.first_order_at(epoch),
                                 weights=self.step_weights(steps, epoch), sample=self.training, backward=backward)
        extra = self.batch_metrics(result)
        if self.training and self.config.bn_mode != "frozen":
            self._write_back(result.buffers)
        metrics = {"loss": float(result.query_loss.mean()), "support_loss": float(result.support_losses[:, 0].mean())}
        metrics["accuracy" if batch.ways is not None else "mse"] = float(result.metric.mean())
        metrics.update(extra)
        return MetaOutput(result.total.mean(), metrics)

    def meta_backward(self, batch, *, epoch: int = 0) -> MetaOutput:
        """``meta_loss(batch, epoch=epoch, backward=True)``: the meta-loss, back-propagated task by task."""
        return self.meta_loss(batch, epoch=epoch, backward=True)

    def evaluate(self, batch, *, steps: int | None = None, best_step: bool | None = None) -> dict[str, torch.Tensor]:
        """Per-task query ``accuracy`` (classification) or ``mse`` (regression) and ``loss`` after
        ``steps`` adaptation steps (default ``eval_steps`` in eval mode); writes no buffers and draws no
        noise (rules that sample per task use their deterministic form), so it is reproducible.

        Also per task: ``step``, the step whose parameters predicted (``best_step``, default the
        config's: the lowest-support-loss step when adaptation diverged, else ``steps``), and
        ``nonfinite_at``, the first step whose support loss was not finite (-1: none).  A divergence never
        raises here: a task whose predictions are not finite scores accuracy 0 (mse inf)."""
        steps = self._default_steps(steps)
        best = self.config.best_step if best_step is None else best_step
        # nothing is differentiated twice and the buffer copies are discarded: native batch norm under vmap
        with torch.no_grad(), native_kernel_under_vmap():
            result = self._run_batch(batch, steps=steps, first_order=True, weights=[0.0] * (steps - 1) + [1.0],
                                     sample=False, final_loss=True, best=best)
        finite = result.query_loss.isfinite()
        if batch.ways is not None:
            metric = torch.where(finite, result.metric, torch.zeros_like(result.metric))
        else:
            metric = torch.where(finite, result.metric, torch.full_like(result.metric, float("inf")))
        bad = ~result.support_losses.isfinite()
        first_bad = torch.where(bad.any(-1), bad.long().argmax(-1), torch.full_like(result.step, -1))
        return {("accuracy" if batch.ways is not None else "mse"): metric, "loss": result.query_loss,
                "step": result.step, "nonfinite_at": first_bad}


class _Float32Loss:
    """``loss_fn`` applied to float32 outputs: a no-op in float32/float64, a cast under bf16 autocast."""

    def __init__(self, fn: LossFn) -> None:
        self.fn = fn

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(float32_outputs(out), target)


def _given_rule(rule: Any, learner: GradientLearner) -> UpdateRule:
    """``rule=`` given to a learner (replacing its ``build_rule``), bound to the learner's adapted names."""
    if not isinstance(rule, UpdateRule):
        raise ConfigError(f"rule must be a fewshot.rules.UpdateRule (e.g. Adam(lr=0.01)), got {type(rule).__name__}")
    return rule.bind(learner.names, learner.reference_param())


def _raise_if_nonfinite(losses: torch.Tensor, steps: int) -> None:
    bad = first_nonfinite_step(losses)
    if bad is not None:
        raise AdaptationError(f"support loss is not finite at inner step {bad} of {steps}: lower the inner learning "
                              "rate or check the inputs for NaN/inf")

"""MAML, first-order MAML and MAML++ (MSL, per-step BN, LSLR, derivative-order annealing) on ``torch.func``.

Usage::

    learner = MAML(Conv4(1, 5), MAMLConfig(inner_steps=1, inner_lr=0.4))
    opt = torch.optim.Adam(learner.parameters(), 1e-3)
    out = learner.meta_loss(batch, epoch=0)          # batch: episodes.TaskBatch
    opt.zero_grad(); out.loss.backward(); opt.step()
    acc = learner.eval().evaluate(val_batch)["accuracy"]   # per task

Loss reduction and the meaning of ``inner_lr``: the inner (support) loss is the *mean* over the
support examples (PyTorch's default reduction), and one inner step is ``p - inner_lr * grad(mean loss)``.
The MAML reference code sums the per-example loss and divides by K (shots), i.e. uses N (ways) times
our loss; its ``alpha`` therefore corresponds to ``inner_lr = N * alpha`` here (Omniglot 5-way
alpha=0.4 -> inner_lr=2.0; 20-way alpha=0.1 -> 2.0; mini-ImageNet 5-way alpha=0.01 -> 0.05).
The meta-loss is the mean over tasks of the (MSL-weighted) mean query loss.

Batch norm (see docs/batchnorm.md): ``bn_mode`` = ``"transductive"`` (batch statistics always, the
original MAML), ``"running"`` (batch statistics + running updates in train mode, stored statistics in
eval mode) or ``"frozen"`` (stored statistics always, never updated).  Each task runs on its own copy
of the buffers; after a training-mode ``meta_loss`` the module's floating buffers become the mean over
tasks of the updated copies.  ``adapt``/``predict``/``evaluate`` never write buffers.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from ..errors import AdaptationError, ConfigError, FewshotError
from ..functional import (LossFn, Params, adaptable_names, call, copy_buffers, first_nonfinite_step, inner_loop,
                          msl_weights, split_state)
from ..nn.batchnorm import StepBatchNorm, norm_training, per_step_batchnorm
from .base import MetaOutput, check_task

BN_MODES = ("transductive", "running", "frozen")
LOSSES = ("auto", "cross_entropy", "mse")
TASK_BATCHING = ("auto", "loop", "vmap")
# leaf modules for which the batched (vmap) path was measured faster than the loop on CPU
_VMAP_FRIENDLY_CPU = (nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.GELU, nn.ELU, nn.SiLU,
                      nn.Identity, nn.Flatten, StepBatchNorm)


@dataclass
class MAMLConfig:
    """Every MAML/FOMAML/MAML++ switch.  Usage: ``MAMLConfig(inner_steps=5, inner_lr=0.05, msl=True)``.

    - ``inner_steps``/``inner_lr``: adaptation steps and SGD step size on the mean support loss
      (see the module docstring for the reference-code alpha); ``eval_steps`` (None = ``inner_steps``)
      is the default number of steps in eval mode.
    - ``first_order``: FOMAML; ``first_order_epochs`` (DA): first order while ``epoch <
      first_order_epochs``, then second order.
    - ``msl``/``msl_epochs`` (MSL): query loss after every step, weighted by ``msl_weights`` while
      ``epoch < msl_epochs``; from then on only the last step's loss.
    - ``learn_inner_lr`` (LSLR): one learnable LR per adapted tensor per step, initialised to ``inner_lr``
      (steps beyond ``inner_steps`` at evaluation reuse the last step's LR).
    - ``per_step_bn`` (BNRS + BNWB): batch-norm layers get ``inner_steps + 1`` slots (converted in place
      if needed); the forward with parameters after ``t`` updates uses slot ``t``.
    - ``bn_mode``: ``"transductive"`` | ``"running"`` | ``"frozen"``.
    - ``adapt_norm``: also adapt normalisation-layer affine parameters (default: meta-learned only);
      ``no_adapt``: name prefixes of parameters that are meta-learned but never adapted.
    - ``loss``: ``"auto"`` (cross-entropy when ``batch.ways`` is set, else MSE) | ``"cross_entropy"`` | ``"mse"``.
    - ``task_batching``: ``"loop"`` (per task), ``"vmap"`` (one batched computation) or ``"auto"``
      (see ``MAML.task_batching_for``: on CPU vmap for MLP-like models, the loop for conv nets).
    """

    inner_steps: int = 1
    inner_lr: float = 0.4
    eval_steps: int | None = None
    first_order: bool = False
    first_order_epochs: int = 0
    msl: bool = False
    msl_epochs: int = 10
    learn_inner_lr: bool = False
    per_step_bn: bool = False
    bn_mode: Literal["transductive", "running", "frozen"] = "transductive"
    adapt_norm: bool = False
    no_adapt: tuple[str, ...] = ()
    loss: Literal["auto", "cross_entropy", "mse"] = "auto"
    task_batching: Literal["auto", "loop", "vmap"] = "auto"

    def __post_init__(self) -> None:
        self.no_adapt = tuple(self.no_adapt)
        for name in ("inner_steps",):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.eval_steps is not None and (not isinstance(self.eval_steps, int) or self.eval_steps <= 0):
            raise ConfigError(f"eval_steps must be a positive integer or None, got {self.eval_steps!r}")
        if not isinstance(self.inner_lr, (int, float)) or not self.inner_lr >= 0:
            raise ConfigError(f"inner_lr must be a non-negative number, got {self.inner_lr!r}")
        for name in ("first_order_epochs", "msl_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name, value, allowed in (("bn_mode", self.bn_mode, BN_MODES), ("loss", self.loss, LOSSES),
                                     ("task_batching", self.task_batching, TASK_BATCHING)):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")

    @classmethod
    def mamlpp(cls, **overrides) -> "MAMLConfig":
        """MAML++: MAML with MSL, per-step BN (running statistics), LSLR and DA on (pair it with
        ``MetaOptimConfig(cosine=True)`` for CA).  Usage: ``MAMLConfig.mamlpp(inner_lr=0.5)``"""
        base = dict(inner_steps=5, inner_lr=0.1, msl=True, msl_epochs=10, learn_inner_lr=True, per_step_bn=True,
                    bn_mode="running", first_order_epochs=50)
        base.update(overrides)
        return cls(**base)


class MAML(nn.Module):
    """Model-agnostic meta-learning over any ``nn.Module`` (see ``MAMLConfig`` for every switch).

    Meta-parameters are ``learner.parameters()`` (the model's, plus the inner LRs with LSLR).
    Usage: ``learner = MAML(model, MAMLConfig()); learner.meta_loss(batch).loss.backward()``
    """

    def __init__(self, model: nn.Module, config: MAMLConfig | None = None, *, loss_fn: LossFn | None = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise FewshotError(f"MAML needs a torch.nn.Module, got {type(model).__name__}")
        self.config = config = config if config is not None else MAMLConfig()
        if not isinstance(config, MAMLConfig):
            raise ConfigError(f"MAML config must be a MAMLConfig, got {type(config).__name__}")
        if config.per_step_bn:
            per_step_batchnorm(model, max(config.inner_steps, config.eval_steps or 0) + 1)
        self.model = model
        self.user_loss_fn = loss_fn
        self.names = adaptable_names(model, adapt_norm=config.adapt_norm, exclude=config.no_adapt)
        if not self.names:
            raise FewshotError("the model has no trainable parameters to adapt: give it parameters with requires_grad=True (or loosen no_adapt/adapt_norm)")
        ref = next(p for n, p in model.named_parameters() if n == self.names[0])
        lrs = torch.full((len(self.names), config.inner_steps), float(config.inner_lr), dtype=ref.dtype, device=ref.device)
        if config.learn_inner_lr:
            self.inner_lrs = nn.Parameter(lrs)
        else:
            self.register_buffer("inner_lrs", lrs)

    # ----------------------------------------------------------------- helpers
    def _loss_fn(self, ways: int | None) -> LossFn:
        if self.user_loss_fn is not None:
            return self.user_loss_fn
        kind = self.config.loss
        if kind == "auto":
            kind = "cross_entropy" if ways is not None else "mse"
        return F.cross_entropy if kind == "cross_entropy" else F.mse_loss

    def _lrs(self) -> dict[str, torch.Tensor]:
        return {n: self.inner_lrs[i] for i, n in enumerate(self.names)}

    def _default_steps(self, steps: int | None) -> int:
        if steps is None:
            steps = self.config.inner_steps if self.training or self.config.eval_steps is None else self.config.eval_steps
        if not isinstance(steps, int) or steps <= 0:
            raise ConfigError(f"steps must be a positive integer, got {steps!r}")
        return steps

    def _bn_step(self, t: int) -> int:
        return t if self.config.per_step_bn else 0

    def _norm_flag(self) -> bool:
        mode = self.config.bn_mode
        return True if mode == "transductive" else (self.training if mode == "running" else False)

    def first_order_at(self, epoch: int) -> bool:
        """Whether the meta-gradient at ``epoch`` is first order (FOMAML or the DA schedule)."""
        return self.config.first_order or epoch < self.config.first_order_epochs

    def step_weights(self, steps: int, epoch: int) -> list[float]:
        """Weights of the query loss after each of ``steps`` steps (MSL, or only the last step)."""
        if self.config.msl and epoch < self.config.msl_epochs:
            return msl_weights(steps, epoch, self.config.msl_epochs)
        return [0.0] * (steps - 1) + [1.0]

    def task_batching_for(self, device: torch.device | str) -> str:
        """``"loop"`` or ``"vmap"``: the path ``meta_loss``/``evaluate`` take for tasks on ``device``.

        ``"auto"`` (measured with bench/maml_bench.py): on CPU, vmap for models made only of linear
        layers, elementwise activations and ``StepBatchNorm`` (sinusoid MLP: ~7x faster than the loop),
        the loop otherwise (Conv4-64, meta-batch 32: vmap 1.8x slower, 8.97 vs 4.87 s); on other devices vmap, unless the model has torch
        ``BatchNorm`` (wrong second-order gradients under vmap) or dropout (random ops under vmap).
        """
        mode = self.config.task_batching
        modules = list(self.model.modules())
        has_torch_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules)
        if mode == "vmap" and has_torch_bn:
            raise ConfigError("task_batching='vmap' gives wrong second-order gradients through torch.nn BatchNorm layers (PyTorch batch rule): use task_batching='loop', or fewshot.nn.StepBatchNorm2d / per_step_batchnorm(model, 1)")
        if mode != "auto":
            return mode
        if has_torch_bn or any(isinstance(m, nn.modules.dropout._DropoutNd) for m in modules):
            return "loop"
        if torch.device(device).type != "cpu":
            return "vmap"
        leaves = [m for m in modules if not list(m.children())]
        return "vmap" if leaves and all(isinstance(m, _VMAP_FRIENDLY_CPU) for m in leaves) else "loop"

    # ----------------------------------------------------------------- one task
    def _task(self, params: Params, buffers: Params, sx, sy, qx, qy, *, steps: int, first_order: bool,
              weights: list[float], loss_fn: LossFn, ways: int | None):
        res = inner_loop(self.model, params, buffers, sx, sy, loss_fn=loss_fn, steps=steps, lrs=self._lrs(),
                         first_order=first_order, names=self.names, per_step_bn=self.config.per_step_bn)
        bufs = res.buffers
        total = None
        out = None
        for t in range(1, steps + 1):
            if weights[t - 1] == 0.0:
                continue
            bufs = copy_buffers(bufs)
            out = call(self.model, res.params[t], bufs, qx, step=self._bn_step(t))
            q_loss = loss_fn(out, qy)
            total = weights[t - 1] * q_loss if total is None else total + weights[t - 1] * q_loss
        if ways is not None:
            if out.dim() < 2 or out.shape[-1] != ways:
                raise FewshotError(f"the model outputs shape {tuple(out.shape)} but the tasks are {ways}-way: give the model {ways} outputs")
            metric = (out.argmax(-1) == qy).to(out.dtype).mean()
        else:
            metric = F.mse_loss(out, qy) if out.shape == qy.shape else q_loss
        return total, q_loss.detach(), metric.detach(), res.losses, bufs

    def _run_batch(self, batch, *, steps: int, first_order: bool, weights: list[float]):
        check_task(batch.support_x, batch.support_y, batch.query_x, batch.query_y, batch.ways, batched=True)
        loss_fn = self._loss_fn(batch.ways)
        params, buffers = split_state(self.model)
        kw = dict(steps=steps, first_order=first_order, weights=weights, loss_fn=loss_fn, ways=batch.ways)
        b = len(batch)
        with norm_training(self.model, self._norm_flag()):
            if self.task_batching_for(batch.support_x.device) == "vmap":
                batched = {k: v.unsqueeze(0).expand(b, *v.shape).clone() for k, v in buffers.items()}

                def one(bufs, sx, sy, qx, qy):
                    return self._task(params, bufs, sx, sy, qx, qy, **kw)

                total, q_loss, metric, s_losses, new_bufs = vmap(one)(batched, batch.support_x, batch.support_y,
                                                                     batch.query_x, batch.query_y)
            else:
                outs = [self._task(params, copy_buffers(buffers), batch.support_x[i], batch.support_y[i],
                                   batch.query_x[i], batch.query_y[i], **kw) for i in range(b)]
                total, q_loss, metric, s_losses = (torch.stack([o[j] for o in outs]) for j in range(4))
                new_bufs = {k: torch.stack([o[4][k] for o in outs]) for k in buffers}
        bad = first_nonfinite_step(s_losses)
        if bad is not None:
            raise AdaptationError(f"support loss is not finite at inner step {bad} of {steps}: lower inner_lr or check the inputs for NaN/inf")
        return total, q_loss, metric, s_losses, new_bufs

    def _write_back(self, new_bufs: Params) -> None:
        with torch.no_grad():
            for name, buf in self.model.named_buffers():
                new = new_bufs[name]
                buf.copy_(new.mean(0) if buf.is_floating_point() else new[0])

    # ----------------------------------------------------------------- public API
    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, *, steps: int | None = None,
              epoch: int = 0, ways: int | None = None) -> Params:
        """Adapted parameters (all trainable ones; differentiable per config and ``epoch``) for one task.

        Buffers are used through a copy (never written).  ``ways`` only enables the label check.
        Usage: ``params = learner.adapt(sx, sy); logits = learner.predict(qx, params)``
        """
        if ways is None and not support_y.is_floating_point() and support_y.numel():
            ways = int(support_y.max()) + 1  # integer labels: classification
        check_task(support_x, support_y, None, None, ways, batched=False)
        steps = self._default_steps(steps)
        params, buffers = split_state(self.model)
        loss_fn = self._loss_fn(ways)
        with norm_training(self.model, self._norm_flag()):
            res = inner_loop(self.model, params, buffers, support_x, support_y, loss_fn=loss_fn, steps=steps,
                             lrs=self._lrs(), first_order=self.first_order_at(epoch), names=self.names,
                             per_step_bn=self.config.per_step_bn)
        bad = first_nonfinite_step(res.losses)
        if bad is not None:
            raise AdaptationError(f"support loss is not finite at inner step {bad} of {steps}: lower inner_lr or check the inputs for NaN/inf")
        return res.params[-1]

    def predict(self, x: torch.Tensor, params: Params, *, steps: int | None = None) -> torch.Tensor:
        """Model outputs on ``x`` with (adapted) ``params``; ``steps`` = how many updates ``params`` had
        (selects the per-step BN slot; default as in ``adapt``).  Usage: ``learner.predict(qx, params)``"""
        steps = self._default_steps(steps)
        _, buffers = split_state(self.model)
        with norm_training(self.model, self._norm_flag()):
            return call(self.model, params, copy_buffers(buffers), x, step=self._bn_step(steps))

    def meta_loss(self, batch, *, epoch: int = 0) -> MetaOutput:
        """Mean over tasks of the (MSL-weighted) query loss after adaptation, differentiable w.r.t.
        ``self.parameters()``; in train mode the BN buffers are updated (mean over tasks).
        Usage: ``out = learner.meta_loss(batch, epoch=e); out.loss.backward()``"""
        steps = self._default_steps(None)
        total, q_loss, metric, s_losses, new_bufs = self._run_batch(
            batch, steps=steps, first_order=self.first_order_at(epoch), weights=self.step_weights(steps, epoch))
        if self.training and self.config.bn_mode != "frozen":
            self._write_back(new_bufs)
        metrics = {"loss": float(q_loss.mean()), "support_loss": float(s_losses[:, 0].mean())}
        metrics["accuracy" if batch.ways is not None else "mse"] = float(metric.mean())
        return MetaOutput(total.mean(), metrics)

    def evaluate(self, batch, *, steps: int | None = None) -> dict[str, torch.Tensor]:
        """Per-task query ``accuracy`` (classification) or ``mse`` (regression) and ``loss`` after
        ``steps`` adaptation steps (default ``eval_steps`` in eval mode); writes no buffers.
        Usage: ``learner.eval(); acc = learner.evaluate(batch)["accuracy"].mean()``"""
        steps = self._default_steps(steps)
        with torch.no_grad():
            _, q_loss, metric, _, _ = self._run_batch(batch, steps=steps, first_order=True,
                                                      weights=[0.0] * (steps - 1) + [1.0])
        return {("accuracy" if batch.ways is not None else "mse"): metric.detach(), "loss": q_loss.detach()}


def fomaml(model: nn.Module, config: MAMLConfig | None = None, **kw) -> MAML:
    """First-order MAML. Usage: ``fomaml(model, MAMLConfig(inner_steps=5))``"""
    return MAML(model, dataclasses.replace(config or MAMLConfig(), first_order=True), **kw)


def mamlpp(model: nn.Module, config: MAMLConfig | None = None, **kw) -> MAML:
    """MAML++ (``MAMLConfig.mamlpp()`` unless a config is given). Usage: ``mamlpp(Conv4(1, 5))``"""
    return MAML(model, config or MAMLConfig.mamlpp(), **kw)


ConfigFactory = Callable[..., MAMLConfig]

"""Batch norm for meta-learning: one layer with optional per-step statistics and affine (MAML++
BNRS/BNWB).

Usage::

    bn = StepBatchNorm2d(64, steps=6)          # 6 slots of running stats and of gamma/beta
    with inner_step(2):                         # slot 2 is used (clamped to steps - 1)
        y = bn(x)

Semantics (see docs/batchnorm.md): the slot index is read from the ``inner_step`` context variable
(default 0); it is clamped to ``steps - 1``.  In training mode the layer normalises with the batch
statistics and updates slot ``t`` of the running statistics in place (momentum ``m``, unbiased
variance, as ``torch.nn.BatchNorm2d``); in eval mode it normalises with slot ``t`` of the stored
running statistics and writes nothing.  With ``steps=1`` it is an ordinary batch norm.

The forward takes one of four paths, all computing the same function
(tests/fewshot/nn/test_batchnorm.py checks that they agree):

1. PyTorch's native kernel (``F.batch_norm``), outside ``torch.func.vmap``: faster and more exact in
   float32; it updates the running-statistics slot (a view) in place.
2. Elementary tensor ops under ``vmap``: PyTorch's batch rule for ``native_batch_norm`` gives wrong
   second-order gradients of the preceding layers (a conv -> BatchNorm2d meta-gradient differs from
   the per-task loop's in the third decimal; with the elementary ops they agree to 1e-12, see
   tests/fewshot/learners/test_maml.py) and loses the update of a per-step slot.
3. The native kernel under ``vmap`` after all, inside ``native_kernel_under_vmap()`` (evaluation:
   first order, buffers discarded), where neither of those matters and one kernel call is much
   faster.
4. Elementary ops with the batch statistics of the first rows only, inside ``statistics_from(rows)``
   (the ``"support"`` BN mode), and with batch statistics over a single value per channel, which the
   native kernel refuses.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..func_transforms import under_vmap

_INNER_STEP: contextvars.ContextVar[int] = contextvars.ContextVar("fewshot_inner_step", default=0)
_STATS_ROWS: contextvars.ContextVar[int | None] = contextvars.ContextVar("fewshot_stats_rows",
                                                                         default=None)
_NATIVE_UNDER_VMAP: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "fewshot_native_under_vmap", default=False)
# batch statistics per layer: recorded by one forward (record_statistics), applied by later ones
# (given_statistics)
Statistics = dict["StepBatchNorm", tuple[torch.Tensor, torch.Tensor]]
_RECORD: contextvars.ContextVar[Statistics | None] = contextvars.ContextVar("fewshot_record_stats",
                                                                            default=None)
_GIVEN: contextvars.ContextVar[Statistics | None] = contextvars.ContextVar("fewshot_given_stats",
                                                                           default=None)


@contextlib.contextmanager
def _scoped(var: contextvars.ContextVar, value: object) -> Iterator[None]:
    """Set ``var`` to ``value`` for the block (restored afterwards, also on error)."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


@contextlib.contextmanager
def inner_step(step: int) -> Iterator[None]:
    """Select the per-step batch-norm slot used by every ``StepBatchNorm`` inside the block.

    Usage: ``with inner_step(t): out = model(x)``
    """
    if step < 0:
        raise ConfigError(f"inner_step must be >= 0, got {step}")
    with _scoped(_INNER_STEP, int(step)):
        yield


@contextlib.contextmanager
def statistics_from(rows: int) -> Iterator[None]:
    """Inside the block, every ``StepBatchNorm`` that normalises with batch statistics takes them
    from the first ``rows`` examples of its input only, and applies them to all examples.

    Why: a task's support set can then define the statistics its queries are normalised with (the
    ``"support"`` BN mode), so a query's output does not depend on the other queries; the running
    statistics (in training mode) are updated from those rows alone.
    Usage: ``with statistics_from(len(support_x)): out = model(torch.cat([support_x, query_x]))``
    """
    if rows < 1:
        raise ConfigError(f"statistics_from needs at least 1 row, got {rows}")
    with _scoped(_STATS_ROWS, int(rows)):
        yield


@contextlib.contextmanager
def native_kernel_under_vmap(enabled: bool = True) -> Iterator[None]:
    """Inside the block (when ``enabled``), ``StepBatchNorm`` uses PyTorch's native kernel under
    ``vmap`` too.

    Why: the elementary ops are needed under ``vmap`` for *second-order* gradients (the native
    kernel's batch rule gets those wrong) and for running-statistics updates of a per-step slot (the
    batch rule updates a copy of the strided slot, so the update is lost).  Where neither matters,
    as in ``evaluate`` (first-order inner loop, buffer copies discarded), the native batch rule
    normalises all tasks in one kernel call (tasks folded into channels) instead of a dozen
    elementwise ops, a slow strided ``var`` among them (bench/NOTES.md).  Do not enable it where
    updated buffers are kept. Usage: ``with torch.no_grad(), native_kernel_under_vmap():
    learner.evaluate(batch)`` (as ``evaluate`` does)
    """
    with _scoped(_NATIVE_UNDER_VMAP, bool(enabled)):
        yield


@contextlib.contextmanager
def record_statistics(store: Statistics) -> Iterator[None]:
    """Inside the block, every ``StepBatchNorm`` that normalises with batch statistics stores the
    mean and (biased) variance it used in ``store`` (keyed by layer).

    Why: an adapted model (``learner.adapt``) in ``bn_mode="support"`` takes its support set's
    statistics once, at adaptation, and later predicts any number of examples, one alone included,
    with them (``given_statistics``), without the support set.
    """
    with _scoped(_RECORD, store):
        yield


@contextlib.contextmanager
def given_statistics(store: Statistics) -> Iterator[None]:
    """Inside the block, every ``StepBatchNorm`` that would use batch statistics uses the ones
    ``record_statistics`` stored for it instead (the examples then do not affect each other)."""
    with _scoped(_GIVEN, store):
        yield


def current_inner_step() -> int:
    """The slot index set by the innermost ``inner_step`` block (0 outside any block)."""
    return _INNER_STEP.get()


class StepBatchNorm(nn.Module):
    """Batch norm over dim 1 with ``steps`` slots of running statistics and of gamma/beta.

    Usage: ``StepBatchNorm(64, steps=1)`` behaves as ``nn.BatchNorm2d(64)`` /
    ``nn.BatchNorm1d(64)``. Parameters ``weight``/``bias`` are ``[steps, C]``; buffers
    ``running_mean``/``running_var`` are ``[steps, C]``.
    """

    expected_dims: tuple[int, ...] = (2, 3, 4, 5)
    running_mean: torch.Tensor | None  # buffers (None when track_running_stats=False)
    running_var: torch.Tensor | None

    def __init__(self, num_features: int, steps: int = 1, *, momentum: float = 0.1,
                 eps: float = 1e-5,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        if num_features <= 0:
            raise ConfigError(f"StepBatchNorm num_features must be > 0, got {num_features}")
        if steps <= 0:
            raise ConfigError(f"StepBatchNorm steps must be >= 1, got {steps}")
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"StepBatchNorm momentum must be in [0, 1], got {momentum}")
        self.num_features, self.steps, self.momentum, self.eps = num_features, steps, momentum, eps
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(steps, num_features))
            self.bias = nn.Parameter(torch.zeros(steps, num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(steps, num_features))
            self.register_buffer("running_var", torch.ones(steps, num_features))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, steps={self.steps}, momentum={self.momentum}, eps={self.eps}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in self.expected_dims:
            raise ConfigError(
                f"{type(self).__name__} expects inputs with {self.expected_dims} dims, "
                f"got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ConfigError(
                f"{type(self).__name__}({self.num_features}) got {x.shape[1]} channels: "
                "fix the layer width")
        t = min(current_inner_step(), self.steps - 1)
        use_batch = self.training or not self.track_running_stats
        given, rows = _GIVEN.get(), _STATS_ROWS.get()
        if use_batch and given is not None:
            if self not in given:
                raise ConfigError(
                    f"{type(self).__name__}({self.num_features}) has no recorded statistics: the "
                    "model changed after adaptation; adapt again")
            return self._normalise(self._float32(x), *given[self], t).to(x.dtype)
        if use_batch and (_RECORD.get() is not None or (rows is not None and rows < x.shape[0])):
            return self._elementary(self._float32(x), t, use_batch, rows).to(x.dtype)
        if not (use_batch and x.numel() == x.shape[1]) and (_NATIVE_UNDER_VMAP.get()
                                                            or not under_vmap()):
            # PyTorch's kernel; it updates the running-statistics slot (a view) in place, as the
            # path below does.
            # Under autocast it takes the bf16 activations with this layer's float32 weights and
            # buffers (its
            # "mixed type" path): statistics and normalisation in float32, only the output rounded
            # to bf16.
            # vmap's batching rule for the kernel has no mixed-type path: there the input goes in as
            # float32
            mixed = self._float32_state() and not under_vmap()
            out = F.batch_norm(x if mixed else self._float32(x),
                               None if self.running_mean is None else self.running_mean[t],
                               None if self.running_var is None else self.running_var[t],
                               None if self.weight is None else self.weight[t],
                               None if self.bias is None else self.bias[t],
                               training=use_batch, momentum=self.momentum, eps=self.eps)
            return out if mixed else out.to(x.dtype)
        # the elementary paths compute in float32 and hand back the input's dtype, as the native
        # kernel does:
        # the next convolution would round the output anyway (ReLU and max-pool commute with
        # rounding), and
        # the ReLU and its backward then touch half the bytes (bench/NOTES.md)
        return self._elementary(self._float32(x), t, use_batch).to(x.dtype)

    def _float32(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in float32 if autocast made it bf16/fp16 (this layer's weights being float32): the
        elementary paths' statistics, normalisation and running buffers are computed in float32,
        since a bf16 variance of near-constant activations rounds to zero or below.  A layer cast to
        bf16 as a whole stays bf16."""
        low = x.dtype in (torch.bfloat16, torch.float16)
        return x.float() if low and (self.weight is None or self.weight.dtype
                                     == torch.float32) else x

    def _float32_state(self) -> bool:
        """Whether this layer holds float32 weights or running buffers: then the native kernel,
        given bf16 activations, accumulates and normalises in float32 (a layer cast to bf16 as a
        whole does not)."""
        held = [v for v in (self.weight, self.running_mean) if v is not None]
        return bool(held) and all(v.dtype == torch.float32 for v in held)

    def _elementary(self, x: torch.Tensor, t: int, use_batch: bool,
                    rows: int | None = None) -> torch.Tensor:
        """The same normalisation from elementary ops (vmap-safe; also handles one value per
        channel). ``rows``: batch statistics from ``x[:rows]`` only (``statistics_from``).

        The variance is the mean of the squared centred values, and those centred values are the
        ones normalised: under vmap, ``Tensor.var``'s strided reduction was 11% of a training step's
        CPU at the Omniglot presets' shape, and reusing ``x - mean`` saves a pass (bench/NOTES.md).
        The means are sums times ``1/n``, whose backward (and double backward) expands the gradient
        without a full-size division."""
        dims = [0] + list(range(2, x.dim()))
        if use_batch:
            src = x if rows is None else x[:rows]
            n = src.numel() // src.shape[1]
            mean = src.sum(dims, keepdim=True) * (1.0 / n)
            centred = x - mean
            dev = centred if rows is None else centred[:rows]
            var = (dev * dev).sum(dims, keepdim=True) * (1.0 / n)
            mean, var = mean.flatten(), var.flatten()
            if self.training and self.track_running_stats:
                # track_running_stats
                assert self.running_mean is not None and self.running_var is not None
                with torch.no_grad():
                    rm, rv = self.running_mean[t], self.running_var[t]
                    rm.mul_(1.0 - self.momentum).add_(self.momentum * mean.detach())
                    rv.mul_(1.0 - self.momentum).add_(
                        self.momentum * var.detach() * (n / max(n - 1, 1)))
            record = _RECORD.get()
            if record is not None:
                record[self] = (mean, var)
            return self._scale_shift(centred, var, t)
        # eval with track_running_stats
        assert self.running_mean is not None and self.running_var is not None
        return self._normalise(x, self.running_mean[t], self.running_var[t], t)

    def _normalise(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                   t: int) -> torch.Tensor:
        """``(x - mean) / sqrt(var + eps)`` per channel, then slot ``t``'s affine."""
        return self._scale_shift(x - mean.view([1, -1] + [1] * (x.dim() - 2)), var, t)

    def _scale_shift(self, centred: torch.Tensor, var: torch.Tensor, t: int) -> torch.Tensor:
        """``centred / sqrt(var + eps)`` then the affine, with the per-channel factors multiplied
        first so the full-size tensor is touched once (``addcmul``)."""
        shape = [1, -1] + [1] * (centred.dim() - 2)
        scale = torch.rsqrt(var.view(shape) + self.eps)
        if not self.affine:
            return centred * scale
        return torch.addcmul(self.bias[t].view(shape), centred, scale * self.weight[t].view(shape))


class StepBatchNorm2d(StepBatchNorm):
    """``StepBatchNorm`` for ``[N, C, H, W]`` inputs. Usage: ``StepBatchNorm2d(64, steps=6)``."""

    expected_dims = (4,)


class StepBatchNorm1d(StepBatchNorm):
    """``StepBatchNorm`` for ``[N, C]`` or ``[N, C, L]`` inputs. Usage: ``StepBatchNorm1d(256)``."""

    expected_dims = (2, 3)


def is_norm_layer(module: nn.Module) -> bool:
    """True for normalisation layers (torch batch/instance/group/layer norm and
    ``StepBatchNorm``)."""
    return isinstance(module,
                      (StepBatchNorm, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))


def has_running_stats(module: nn.Module) -> bool:
    """True for normalisation layers whose behaviour depends on train/eval (running statistics)."""
    return isinstance(module, (StepBatchNorm, nn.modules.batchnorm._NormBase))


@contextlib.contextmanager
def norm_training(model: nn.Module, training: bool) -> Iterator[None]:
    """Temporarily set the ``training`` flag of every running-statistics norm layer in ``model``.

    Usage: ``with norm_training(model, True): ...`` (batch statistics even in eval mode).
    """
    layers = [m for m in model.modules() if has_running_stats(m)]
    saved = [m.training for m in layers]
    for m in layers:
        m.training = training
    try:
        yield
    finally:
        for m, flag in zip(layers, saved):
            m.training = flag


def per_step_batchnorm(model: nn.Module, steps: int) -> nn.Module:
    """Replace every batch-norm layer of ``model`` (torch ``BatchNorm1d/2d/3d`` or ``StepBatchNorm``
    with fewer slots) by a ``StepBatchNorm`` with ``steps`` slots, each slot initialised from the
    old layer.

    The model is changed in place and returned (build the optimizer afterwards).
    Usage: ``per_step_batchnorm(model, steps=config.inner_steps + 1)``
    """
    if steps <= 0:
        raise ConfigError(f"per_step_batchnorm steps must be >= 1, got {steps}")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, StepBatchNorm):
                if child.steps >= steps:
                    continue
                cls = type(child)
                momentum, eps = child.momentum, child.eps
                src_w = None if child.weight is None else child.weight[-1]
                src_b = None if child.bias is None else child.bias[-1]
                src_m = None if child.running_mean is None else child.running_mean[-1]
                src_v = None if child.running_var is None else child.running_var[-1]
                affine, track = child.affine, child.track_running_stats
            elif isinstance(child, nn.modules.batchnorm._BatchNorm):
                if child.momentum is None:
                    raise ConfigError(
                        f"batch norm '{name}' uses momentum=None (cumulative average): "
                        "set a float momentum to convert it to per-step batch norm")
                cls = StepBatchNorm2d if isinstance(child, nn.BatchNorm2d) else (
                    StepBatchNorm1d if isinstance(child, nn.BatchNorm1d) else StepBatchNorm)
                momentum, eps = child.momentum, child.eps
                src_w, src_b, src_m, src_v = (child.weight, child.bias, child.running_mean,
                                              child.running_var)
                affine, track = child.affine, child.track_running_stats
            else:
                continue
            ref = src_w if src_w is not None else src_m
            new = cls(child.num_features, steps, momentum=momentum, eps=eps, affine=affine,
                      track_running_stats=track)
            if ref is not None:
                new = new.to(device=ref.device, dtype=ref.dtype)
            with torch.no_grad():
                for dst, src in ((new.weight, src_w), (new.bias, src_b),
                                 (new.running_mean, src_m), (new.running_var, src_v)):
                    if dst is not None and src is not None:
                        dst.copy_(src.detach().expand_as(dst))
            new.train(child.training)
            setattr(parent, name, new)
    return model

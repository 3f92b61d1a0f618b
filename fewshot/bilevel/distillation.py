"""Dataset distillation (Wang, Zhu, Torralba & Efros 2018): a handful of synthetic training images,
and the step sizes to train on them, learned so that a network trained on them alone from a given
(or any random) initialisation does well on the real data.

The distilled data ``x~`` (``steps`` batches of ``images_per_class`` images per class) and the step
sizes ``eta~`` (one per inner step; ``epochs`` passes over the batches) define training:

    theta_{i+1} = theta_i - eta~_i grad_theta l(x~_{i mod steps}, y~; theta_i),   i < steps * epochs

and the distillation loss is the real data's loss after it, ``l(x, y; theta_{steps * epochs})``,
minimised over ``x~`` and ``eta~`` (and, with soft labels, over label vectors ``y~``: Sucholutsky &
Schonlau 2019) by reverse-mode through the whole unroll (``fewshot.bilevel.unrolled``).  With a
fixed initialisation the distilled data fit that one ``theta_0``; with random initialisations a
fresh ``theta_0`` is drawn at every outer step, so they must work for any.

Usage::

    data = DistilledData(classes=10, images_per_class=1, steps=1, epochs=3,
                         image_shape=(1, 28, 28), generator=g)
    loss = distillation_loss(model, data, init, real_x, real_y)   # backward: into data
    params = train_on_distilled(model, data, init)                # the network it trains
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_count
from ..errors import ConfigError
from ..functional import call
from ..rules.base import Params, State, UpdateRule
from .problem import InnerProblem, unroll


class StepSizes(UpdateRule):
    """``theta - eta~_t * grad``: one learned step size per inner step, shared by every tensor (the
    paper's ``eta~_i``), kept positive as ``softplus(raw)`` (as the authors' code does). Given
    ``layers`` (the network's parameter names), one per inner step and tensor instead, as MAML++
    learns per-layer per-step inner rates."""

    def __init__(self, count: int, lr: float, *, layers: Sequence[str] | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        check_count(count, "step sizes")
        if not lr > 0:
            raise ConfigError(f"the initial step size must be > 0, got {lr}")
        if layers is not None and (not layers or len(set(layers)) != len(layers)):
            raise ConfigError(f"layers must be distinct parameter names, got {list(layers)}")
        self.layer_index = None if layers is None else {name: i for i, name in enumerate(layers)}
        shape = (count,) if layers is None else (count, len(layers))
        start = torch.full(shape, float(lr), dtype=dtype)
        self.raw = nn.Parameter(start + torch.log(-torch.expm1(-start)))  # softplus^-1(lr)

    @property
    def lrs(self) -> torch.Tensor:
        """The step sizes, ``[count]`` (with ``layers``: ``[count, len(layers)]``)."""
        return F.softplus(self.raw)

    def init(self, params: Mapping[str, torch.Tensor], noise: torch.Tensor | None = None) -> State:
        if self.layer_index is not None and set(params) != set(self.layer_index):
            raise ConfigError(f"the step sizes are per layer of {sorted(self.layer_index)}, "
                              f"but the network trains {sorted(params)}: build them from its "
                              "named_parameters()")
        return {}

    def forward(self, grads: Mapping[str, torch.Tensor], state: State,
                params: Mapping[str, torch.Tensor], *, step: int,
                loss: torch.Tensor) -> tuple[Params, State]:
        lr = F.softplus(self.raw[step])
        if self.layer_index is None:
            return {n: -lr * g for n, g in grads.items()}, state
        return {n: -lr[self.layer_index[n]] * g for n, g in grads.items()}, state


class DistilledData(nn.Module):
    """The learned training set: ``images`` ``[steps, classes * images_per_class, *image_shape]``
    (drawn from N(0, 1), as the paper starts), ``labels`` (class ``i % classes`` for image ``i`` of
    a step; a buffer) or, with ``soft_labels``, learned label vectors ``soft`` started one-hot and
    unconstrained (Sucholutsky & Schonlau: the inner loss is ``sum_c soft[c] * CE(out, c)``), and
    ``step_sizes`` (``StepSizes``, ``steps * epochs`` of them, started at ``lr``; given ``layers``,
    the network's parameter names, that many per step: one per tensor)."""

    def __init__(self, classes: int, images_per_class: int, steps: int, epochs: int,
                 image_shape: tuple[int, ...], *, lr: float = 0.02, soft_labels: bool = False,
                 layers: Sequence[str] | None = None, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        for name, value in (("classes", classes), ("images_per_class", images_per_class),
                            ("steps", steps), ("epochs", epochs)):
            check_count(value, name)
        self.classes, self.steps, self.epochs = classes, steps, epochs
        per_step = classes * images_per_class
        self.images = nn.Parameter(torch.randn(steps, per_step, *image_shape, generator=generator,
                                               dtype=dtype))
        labels = torch.arange(per_step).remainder(classes).expand(steps, per_step).clone()
        self.register_buffer("labels", labels)
        self.soft_labels = bool(soft_labels)
        if self.soft_labels:
            self.soft = nn.Parameter(F.one_hot(labels, classes).to(dtype))
        self.step_sizes = StepSizes(steps * epochs, lr, layers=layers, dtype=dtype)

    def targets(self) -> torch.Tensor:
        """The labels the inner loss trains on: class indices, or the soft label vectors."""
        target = self.soft if self.soft_labels else self.labels
        assert isinstance(target, torch.Tensor)
        return target

    def problem(self, model: nn.Module) -> InnerProblem:
        """Training ``model`` on the distilled data: ``steps * epochs`` steps, batch ``i % steps``
        at step ``i``."""

        def loss(params: Params, x: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
            out = call(model, params, {}, x[step % self.steps])
            target = y[step % self.steps]
            if target.is_floating_point():  # soft labels: each class's cross-entropy, weighted
                return -(target * out.log_softmax(-1)).sum(-1).mean()
            return F.cross_entropy(out, target)

        return InnerProblem(loss, self.step_sizes, self.steps * self.epochs, self.images,
                            self.targets(), hyper=self)


def _check_model(model: nn.Module, init: Params) -> None:
    if any(b.numel() for b in model.buffers()):
        raise ConfigError("dataset distillation trains a network without buffers (batch-norm "
                          "statistics would depend on the distilled batch): use a model without "
                          "batch norm, e.g. fewshot.nn.LeNet")
    names = {n for n, _ in model.named_parameters()}
    if set(init) != names:  # a missing name would silently train the module's own tensor
        missing, extra = sorted(names - set(init)), sorted(set(init) - names)
        raise ConfigError(f"the initialisation must name every parameter of the model: missing "
                          f"{missing or 'none'}, unknown {extra or 'none'} (build it as "
                          "{n: p.detach() for n, p in model.named_parameters()})")


def distillation_loss(model: nn.Module, data: DistilledData, init: Params, x: torch.Tensor,
                      y: torch.Tensor, *, checkpoint: int = 0) -> torch.Tensor:
    """The real data's cross-entropy after training ``model`` from ``init`` on ``data``,
    differentiable with respect to ``data``'s parameters (and ``init``)."""
    _check_model(model, init)
    trained = unroll(data.problem(model), init, checkpoint=checkpoint).params
    return F.cross_entropy(call(model, trained, {}, x), y)


def train_on_distilled(model: nn.Module, data: DistilledData, init: Params | None = None
                       ) -> Params:
    """The parameters ``model`` reaches from ``init`` (default: its own weights, trainable or
    not) by training on ``data`` with its learned step sizes (no graph kept)."""
    params: Params = dict(model.named_parameters()) if init is None else init
    _check_model(model, params)
    with torch.no_grad():
        result = unroll(data.problem(model), {n: p.detach() for n, p in params.items()})
    return result.params

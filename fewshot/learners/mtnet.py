"""MT-net and T-net (Lee & Choi 2018): MAML with meta-learned layerwise transforms and update masks.

Every ``nn.Linear`` / ``nn.Conv2d`` of the model computes ``T (W x + b)`` with a meta-learned square
``T`` (identity at first, never adapted; ``fewshot.nn.transform``); the inner loop adapts ``W`` and
``b`` by ``W <- W - inner_lr * (M ⊙ grad W)``, where ``M`` keeps or freezes whole output units and
is sampled per task from learned logits (``fewshot.rules.RowMask``).  T-net is the same without the
mask. With ``T = I`` and ``M = 1`` the model and its updates are MAML's.

As in the reference code, every such layer gets a ``T`` and a mask, the output layer included
(``transform_last=False`` leaves the last one plain).  Other adapted parameters (e.g. norm-layer
affines with ``adapt_norm``) are updated by plain SGD, unmasked.  Evaluation (``adapt``,
``evaluate``, eval-mode ``meta_loss``) uses the most likely mask (see ``RowMask``).
"""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..nn.transform import TRANSFORMED, add_transforms
from ..rules import SGD, Chain, RowMask, UpdateRule
from .base import GradientLearner
from .config import MTNetConfig
from .spec import LearnerSpec


class MTNet(GradientLearner):
    """MT-net (``MTNetConfig()``) or T-net (``MTNetConfig(mask=False)``) over any ``nn.Module`` with
    ``nn.Linear``/``nn.Conv2d`` layers; the model is converted in place (build the optimizer after).

    Usage: ``learner = MTNet(Conv4(1, 5), MTNetConfig()); learner.meta_loss(batch).loss.backward()``
    """

    config_class = MTNetConfig
    config: MTNetConfig

    def prepare_model(self, model: nn.Module) -> nn.Module:
        self.transformed = add_transforms(model, skip_last=not self.config.transform_last)
        if not self.transformed:
            raise ConfigError(
                f"MTNet found no nn.Linear or nn.Conv2d layer with trainable weights in "
                f"{type(model).__name__}: MT-net transforms those layers (use MAML "
                "otherwise)")
        return model

    def adapted_names(self) -> list[str]:
        transforms = {f"{name}.transform" if name else "transform" for name in self.transformed}
        return [n for n in super().adapted_names() if n not in transforms]

    def mask_groups(self) -> list[tuple[list[str], int]]:
        """``(adapted parameter names, output units)`` of every transformed layer whose weight is
        adapted."""
        adapted, groups = set(self.names), []
        modules = dict(self.model.named_modules())
        for name in self.transformed:
            layer = modules[name]
            assert isinstance(layer, TRANSFORMED)
            prefix = f"{name}." if name else ""
            names = [prefix + p for p in ("weight", "bias") if prefix + p in adapted]
            if prefix + "weight" in adapted:
                groups.append((names, layer.weight.shape[0]))
        return groups

    def build_rule(self) -> UpdateRule:
        ref = self.reference_param()
        sgd = SGD(self.names, self.config.inner_lr, dtype=ref.dtype, device=ref.device)
        groups = self.mask_groups() if self.config.mask else []
        if not groups:
            return sgd
        mask = RowMask(groups, logit_init=self.config.logit_init,
                       temperature=self.config.temperature,
                       dtype=ref.dtype, device=ref.device)
        return Chain(mask, sgd)


SPECS = (LearnerSpec("mtnet", MTNet), LearnerSpec("tnet", MTNet, forced={"mask": False}))

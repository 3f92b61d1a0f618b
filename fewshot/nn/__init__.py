"""Backbones and meta-learning batch norm. Usage: ``from fewshot.nn import Conv4, StepBatchNorm2d,
inner_step``."""
from .backbones import MLP, Conv4, FullyConnected, LeNet
from .batchnorm import (
    StepBatchNorm,
    StepBatchNorm1d,
    StepBatchNorm2d,
    current_inner_step,
    inner_step,
    is_norm_layer,
    norm_training,
    per_step_batchnorm,
    statistics_from,
)
from .transform import TransformedConv2d, TransformedLinear, add_transforms

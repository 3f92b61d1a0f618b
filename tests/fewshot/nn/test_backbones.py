"""Backbone shapes, layer structure and bad arguments."""
import pytest
import torch
from torch import nn

from fewshot.errors import ConfigError
from fewshot.nn import MLP, Conv4, FullyConnected, StepBatchNorm2d


def test_conv4_omniglot_and_miniimagenet_shapes():
    g = torch.Generator().manual_seed(0)
    m = Conv4(1, 5, hidden=64, image_size=28)
    assert m.feature_dim == 64
    assert m(torch.rand(3, 1, 28, 28, generator=g)).shape == (3, 5)
    convs = [layer for layer in m.modules() if isinstance(layer, nn.Conv2d)]
    assert len(convs) == 4 and all(c.kernel_size == (3, 3) and c.out_channels == 64 for c in convs)
    assert sum(isinstance(layer, nn.MaxPool2d) for layer in m.modules()) == 4
    mi = Conv4(3, 5, hidden=32, image_size=84)
    assert mi.feature_dim == 32 * 5 * 5
    assert mi(torch.rand(2, 3, 84, 84, generator=g)).shape == (2, 5)


def test_conv4_strided_variant_has_no_pooling():
    m = Conv4(1, 20, hidden=64, image_size=28, pool=False)
    assert not any(isinstance(layer, nn.MaxPool2d) for layer in m.modules())
    assert all(c.stride == (2, 2) for c in m.modules() if isinstance(c, nn.Conv2d))
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 20)


def test_per_step_bn_slots_and_fc_nets():
    m = Conv4(1, 5, hidden=8, bn_steps=6)
    bns = [layer for layer in m.modules() if isinstance(layer, StepBatchNorm2d)]
    assert len(bns) == 4 and all(b.weight.shape == (6, 8) and b.running_mean.shape == (6, 8)
                                 for b in bns)
    fc = FullyConnected(784, 5)
    widths = [layer.out_features for layer in fc.modules() if isinstance(layer, nn.Linear)]
    assert widths == [256, 128, 64, 64, 5]
    assert fc(torch.zeros(4, 1, 28, 28)).shape == (4, 5)
    mlp = MLP(1, 1)
    assert [layer.out_features for layer in mlp.modules() if isinstance(layer, nn.Linear)] == [40,
                                                                                               40,
                                                                                               1]
    assert mlp(torch.zeros(7, 1)).shape == (7, 1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden=0), "hidden must be >= 1, got 0"),
    (dict(image_size=8),
     "image_size=8 is too small for 4 blocks: use fewer blocks or larger images"),
    (dict(bn_steps=0), "bn_steps must be >= 1, got 0"),
    (dict(out_features=-1), "out_features must be >= 1, got -1")])
def test_bad_backbone_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        Conv4(**kwargs)


def test_lenet_is_dataset_distillations_network():
    """LeNet-5's 61,706 parameters, Xavier-normal weights (std sqrt(2 / (fan_in + fan_out))) and
    zero biases, drawn from the generator given: the same seed, the same network."""
    from fewshot.nn import LeNet

    a = LeNet(1, 10, generator=torch.Generator().manual_seed(0))
    b = LeNet(1, 10, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert sum(p.numel() for p in a.parameters()) == 61_706
    assert a(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert LeNet(3, 10, image_size=32)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    fc = a.classifier[0]
    want = (2 / (400 + 120)) ** 0.5
    assert abs(float(fc.weight.std()) - want) < 0.05 * want and not fc.bias.any()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in a.modules())

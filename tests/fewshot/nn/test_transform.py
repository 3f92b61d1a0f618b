"""MT-net transform layers: in-place conversion, identity start, T applied after the bias,
idempotence."""
import copy

import torch
from torch import nn

from fewshot.nn import Conv4, TransformedConv2d, TransformedLinear, add_transforms


def test_conversion_keeps_weights_keys_and_the_global_rng():
    torch.manual_seed(0)  # test-only module init
    # eval: the forward writes no BN stats
    model = Conv4(1, 3, hidden=4, image_size=8, blocks=2).eval()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 1, 8, 8)
    expected = model(x)
    state = torch.get_rng_state()
    names = add_transforms(model)
    assert torch.equal(torch.get_rng_state(), state)
    assert names == ["features.0", "features.4", "classifier"]
    after = model.state_dict()
    assert set(after) == set(before) | {f"{n}.transform" for n in names}
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert torch.equal(model(x), expected)
    # idempotent
    assert add_transforms(model) == names and model.features[0].transform.shape == (4, 4)


def test_T_is_applied_to_the_layer_output_after_the_bias():
    torch.manual_seed(1)  # test-only module init
    lin, conv = nn.Linear(3, 4), nn.Conv2d(2, 3, 3, padding=1)
    x, img = torch.randn(5, 3), torch.randn(2, 2, 6, 6)
    plain_lin, plain_conv = lin(x), conv(img)
    model = nn.ModuleList([lin, conv])
    add_transforms(model)
    assert isinstance(lin, TransformedLinear) and isinstance(conv, TransformedConv2d)
    with torch.no_grad():
        lin.transform.copy_(torch.randn(4, 4))
        conv.transform.copy_(torch.randn(3, 3))
    assert torch.allclose(lin(x), plain_lin @ lin.transform.T, atol=1e-6)
    assert torch.allclose(conv(img), torch.einsum("oc,nchw->nohw", conv.transform, plain_conv),
                          atol=1e-5)


def test_skip_last_frozen_layers_and_subclasses_are_left_alone():
    class MyLinear(nn.Linear):
        pass

    frozen = nn.Linear(2, 2)
    frozen.weight.requires_grad_(False)
    model = nn.Sequential(nn.Linear(2, 3), frozen, MyLinear(3, 2), nn.Linear(2, 2))
    model[1], model[2] = frozen, MyLinear(2, 2)
    assert add_transforms(model, skip_last=True) == ["0"]
    assert type(model[1]) is nn.Linear and type(model[2]) is MyLinear and type(
        model[3]) is nn.Linear

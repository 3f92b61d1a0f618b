"""Wrongly shaped inputs at adapt/predict give one line naming the expected shape and
learner.preprocessing, not a raw torch.cat / convolution RuntimeError."""
from __future__ import annotations

import pytest
import torch

import fewshot.pretrained as pt
from fewshot.errors import FewshotError
from fewshot.learners import MAML, MAMLConfig
from fewshot.nn import Conv4

EXPECTS = r"but the model expects \[N, 1, 28, 28\] \(N examples\)"
PREP = (r"prepare images with learner\.preprocessing "
        r"\(Preprocessing\(size=28, channels=1, invert=True")


@pytest.fixture(scope="module")
def shipped():
    learner = pt.load("omniglot-5w1s-maml")
    g = torch.Generator().manual_seed(0)
    sx = torch.rand(5, 1, 28, 28, generator=g)
    return learner, sx, learner.adapt(sx, torch.arange(5))


@pytest.mark.parametrize("shape, match", [
    ((2, 1, 64, 64), r"predict got inputs of shape \[2, 1, 64, 64\] " + EXPECTS + ": " + PREP),
    ((2, 3, 28, 28), r"predict got inputs of shape \[2, 3, 28, 28\] " + EXPECTS + ": " + PREP),
    ((1, 28, 28), r"predict got inputs of shape \[1, 28, 28\] " + EXPECTS +
     r": one example needs its batch dimension: pass x\[None\]"),
])
def test_predict_on_a_wrongly_shaped_image_is_one_line(shipped, shape, match):
    learner, sx, params = shipped
    with pytest.raises(FewshotError, match=match) as info:
        learner.predict(torch.rand(shape), params, support_x=sx)
    assert "\n" not in str(info.value)
    # the right shape still works
    assert learner.predict(sx[:1], params, support_x=sx).shape == (1, 5)


def test_adapt_on_rgb_images_is_one_line(shipped):
    learner, _, _ = shipped
    with pytest.raises(FewshotError,
                       match=r"adapt got inputs of shape \[5, 3, 28, 28\] " + EXPECTS + ": "
                       + PREP):
        learner.adapt(torch.rand(5, 3, 28, 28), torch.arange(5))
    with pytest.raises(FewshotError,
                       match=r"adapt needs a torch.Tensor of examples \[N, \.\.\.\], got list"):
        learner.adapt([torch.rand(1, 28, 28)], torch.arange(1))


def test_a_users_model_learns_the_shape_from_adapt():
    torch.manual_seed(0)  # test-only module init
    learner = MAML(Conv4(1, 3, hidden=8, image_size=16),
                   MAMLConfig(inner_steps=1, bn_mode="support")).eval()
    sx = torch.rand(6, 1, 16, 16)
    params = learner.adapt(sx, torch.arange(3).repeat(2))
    assert learner.predict(sx[:2], params, support_x=sx).shape == (2, 3)
    with pytest.raises(FewshotError,
                       match=r"predict got inputs of shape \[2, 1, 20, 20\] but the model expects "
                             r"\[N, 1, 16, 16\] \(N examples\): predict on examples "
                             r"shaped like the "
                             r"support set passed to adapt"):
        learner.predict(torch.rand(2, 1, 20, 20), params, support_x=sx)
    with pytest.raises(FewshotError, match=r"pass x\[None\]"):
        learner.predict(sx[0], params, support_x=sx)


def test_uint8_images_are_refused_in_one_line_naming_the_conversion(shipped):
    learner, sx, adapted = shipped
    pixels = (sx * 255).to(torch.uint8)
    for call in (lambda: learner.adapt(pixels, torch.arange(5)), lambda: adapted(pixels),
                 lambda: learner.predict(pixels, dict(adapted.params), support_x=sx)):
        with pytest.raises(FewshotError,
                           match=r"got uint8 inputs but the model takes floating point ones: "
                                 r"prepare "
                                 r"raw images with learner\.preprocessing .* "
                                 r"x\.float\(\) / 255") as info:
            call()
        assert "\n" not in str(info.value)
    own = MAML(Conv4(1, 3, hidden=8, image_size=16), MAMLConfig(inner_steps=1))
    with pytest.raises(FewshotError,
                       match=r"adapt got int64 inputs .*: convert them, e.g\. x\.float\(\) / 255"):
        own.adapt(torch.zeros(3, 1, 16, 16, dtype=torch.int64), torch.arange(3))


def test_pixels_left_in_0_255_are_refused_by_a_model_with_a_preprocessing(shipped):
    learner, sx, adapted = shipped
    with pytest.raises(FewshotError,
                       match=r"adapt got inputs in \[0\.\d+, 25\d(\.\d+)?\] but the model takes "
                             r"images in \[0, 1\]: prepare them with "
                             r"learner\.preprocessing .* divide "
                             r"0-255 pixels by 255"):
        learner.adapt(sx * 255, torch.arange(5))
    with pytest.raises(FewshotError, match=r"predict got inputs in \[-3, "):
        adapted(sx - 3)
    # within the tolerated range: contrast changes are the user's
    assert adapted(sx * 1.5).shape == (5, 5)
    # no preprocessing: no range known
    own = MAML(Conv4(1, 3, hidden=8, image_size=16), MAMLConfig(inner_steps=1))
    assert own.adapt(torch.rand(3, 1, 16, 16) * 255, torch.arange(3)).steps == 1

"""_checks.py: inputs a model cannot take get one line naming the problem and the fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infolens import attribution as A
from infolens._checks import check_images
from infolens.attribution.metrics import Deletion
from infolens.probe import capture
from infolens.srop import layer_srops


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 8 * 8, 3)).eval()


@pytest.mark.parametrize("call", [
    lambda m, x: A.Saliency(m).attribute(x, 0),
    lambda m, x: Deletion(m, n_steps=2)(x, [0] * x.shape[0], torch.rand(x.shape[0], 8, 8)),
    lambda m, x: layer_srops(m, x),
    lambda m, x: A.attribute_many(m, {"saliency": A.Saliency(m)}, x, 0),
    lambda m, x: capture(m, x, "all conv", grads=True),
])
def test_float64_pixels_into_a_float32_model_name_the_fix(call):
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"are float64 but the model's weights are float32; pass .*\.to\(torch.float32\)"):
        call(_net(), x)


@pytest.mark.parametrize("call", [
    lambda m, x: A.Saliency(m).attribute(x, 0),
    lambda m, x: A.attribute_many(m, {"saliency": A.Saliency(m)}, x, 0),
    lambda m, x: capture(m, x, "all conv", grads=True),
])
def test_a_batch_without_its_channel_axis_names_the_fix(call):
    x = torch.rand(5, 8, 8)  # five 8x8 gray images, channel axis missing
    with pytest.raises(ValueError, match=r"batch of 5 \(H, W\) images\?.*unsqueeze\(1\)"):
        call(_net(), x)
    # one (C, H, W) image is still welcome where the caller says it holds one
    assert check_images(torch.rand(1, 8, 8), model=_net(), allow_3d=True).shape == (1, 1, 8, 8)


def _rgb_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 8 * 8, 3)).eval()


@pytest.mark.parametrize("call", [
    lambda m, x: A.Saliency(m).attribute(x, 0),
    lambda m, x: layer_srops(m, x),
    lambda m, x: check_images(x, model=m),
])
def test_three_grey_images_on_an_rgb_model_are_not_taken_for_one_colour_image(call):
    # (3, H, W) matches an RGB model's channel count: it used to pass as one colour image
    x = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match=r"shape \(3, 8, 8\), which is ambiguous.*\(N, C, H, W\).*unsqueeze\(0\)"):
        call(_rgb_net(), x)
    # the explicit forms both work
    assert check_images(x.unsqueeze(0), model=_rgb_net()).shape == (1, 3, 8, 8)
    assert check_images(x.unsqueeze(1), channels=1).shape == (3, 1, 8, 8)
    # a caller that knows it holds one image may still opt in
    assert check_images(x, allow_3d=True).shape == (1, 3, 8, 8)


def test_a_double_model_takes_double_pixels():
    m = _net().double()
    assert check_images(torch.rand(2, 1, 8, 8, dtype=torch.float64), model=m).dtype == torch.float64

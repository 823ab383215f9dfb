"""Every promised error names the argument and the fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import captum_topgap
from captum_topgap._checks import check_mask


@pytest.mark.parametrize("bad, message", [
    (torch.rand(3, 8, 8), r"`inputs` must have 4 dimensions .* Add a batch dimension"),
    (torch.rand(1, 1, 3, 8, 8), r"`inputs` must have 4 dimensions"),
    (torch.rand(0, 3, 8, 8), r"`inputs` is an empty batch"),
    (torch.full((1, 3, 8, 8), float("nan")), r"`inputs` contains NaN or Inf"),
    (torch.full((1, 3, 8, 8), float("inf")), r"`inputs` contains NaN or Inf"),
    (torch.rand(1, 1, 8, 8), r"`inputs` has 1 channels but the model expects 3"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), r"`inputs` must be a floating-point tensor.*x.float\(\)"),
    ([[0.0]], r"`inputs` must be a torch.Tensor"),
])
@pytest.mark.parametrize("name", ["gradcam", "saliency", "layer_gradcam"])
def test_bad_inputs(name: str, bad, message: str, tiny_net) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        captum_topgap.get_method(name, tiny_net).attribute(bad, target=0)


@pytest.mark.parametrize("target, message", [
    (3, r"`target` \[3, 3\] out of range for a model with 3 outputs; use indices in \[0, 2\]"),
    (-1, r"`target` \[-1, -1\] out of range"),
    ([0, 1, 2], r"`target` must be one index or one per image \(2\)"),
    (torch.tensor([0.0, 1.0]), r"`target` must hold integer class indices.*labels.long\(\)"),
    (torch.zeros(2, 2, dtype=torch.long), r"`target` must be one index or one per image"),
])
@pytest.mark.parametrize("name", ["gradcam", "integrated_gradients"])
def test_bad_targets(name: str, target, message: str, tiny_net, images) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        captum_topgap.get_method(name, tiny_net).attribute(images, target=target)


def test_layer_without_spatial_output(tiny_net, images) -> None:
    """The layer is checked on the first input (at its size), before any map is computed."""
    with pytest.raises(ValueError, match=r"`layer` .* has no spatial output .* pick a convolutional block"):
        captum_topgap.get_method("gradcam", tiny_net, layer=tiny_net.fc).attribute(images, target=0)
    with pytest.warns(UserWarning, match=r"has a 1 × 1 output for \(8, 8\) inputs: every map will be constant"):
        captum_topgap.get_method("layer_gradcam", tiny_net, layer=tiny_net.pool).attribute(images, target=0)


def test_layer_not_in_the_model(tiny_net) -> None:
    with pytest.raises(ValueError, match=r"`layer` must be a submodule of the model"):
        captum_topgap.get_method("gradcam", tiny_net, layer=nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match=r"`layer` 'features.9' is not a submodule.*closest names: \['features"):
        captum_topgap.get_method("gradcam", tiny_net, layer="features.9")


def test_model_without_spatial_layer() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(ValueError, match=r"no submodule .* spatial .* pass `layer=` explicitly"):
        captum_topgap.get_method("gradcam", mlp).attribute(torch.rand(1, 3, 2, 2), target=0)
    with pytest.raises(ValueError, match=r"no submodule .* spatial"):
        _ = captum_topgap.get_method("gradcam", mlp, input_size=(3, 2, 2)).layer


def test_layer_given_to_a_pixel_method(tiny_net) -> None:
    with pytest.raises(ValueError, match=r"`layer` is not used by the pixel method 'saliency'; leave it None"):
        captum_topgap.get_method("saliency", tiny_net, layer=tiny_net.features)


def test_model_must_be_a_module() -> None:
    with pytest.raises(TypeError, match=r"`model` must be a torch.nn.Module"):
        captum_topgap.get_method("saliency", lambda x: x)


def test_model_must_return_class_scores(images) -> None:
    conv = nn.Conv2d(3, 2, 3)
    with pytest.raises(ValueError, match=r"the model must return class scores of shape \(N, classes\)"):
        captum_topgap.get_method("saliency", conv).attribute(images, target=0)


def test_mask_of_another_size(images) -> None:
    with pytest.raises(ValueError, match=r"`mask` has shape \(2, 1, 4, 4\) but the images are \(2, 3, 8, 8\)"):
        check_mask(torch.ones(2, 1, 4, 4), images)
    assert check_mask(torch.ones(2, 8, 8), images).shape == (2, 1, 8, 8)

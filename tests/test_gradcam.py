"""Grad-CAM computed by hand on a GAP+FC model; pytorch-grad-cam and Captum agree on it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import captum_topgap


def hand_model() -> nn.Module:
    """X (1×2×2) -> 1×1 conv with weights (1, −1) -> A = (x, −x) -> GAP -> FC [[2, 1], [0, 3]]."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        model[3].weight.copy_(torch.tensor([[2.0, 1.0], [0.0, 3.0]]))
    return model


X = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])
# Class 0: alpha = (2, 1) / 4 -> ReLU(0.5 x - 0.25 x) = ReLU(0.25 x); class 1: alpha = (0, 3/4) -> ReLU(-0.75 x).
HAND = {0: torch.tensor([[0.25, 0.0], [0.75, 0.0]]), 1: torch.tensor([[0.0, 1.5], [0.0, 0.0]])}


@pytest.mark.parametrize("target", [0, 1])
def test_captum_layer_gradcam_equals_the_hand_computation(target: int) -> None:
    model = hand_model()
    cam = captum_topgap.get_method("layer_gradcam", model, model[0], upsample=False)
    assert torch.allclose(cam.attribute(X, target=target)[0, 0], HAND[target])


@pytest.mark.parametrize("target", [0, 1])
def test_grad_cam_gradcam_equals_the_normalised_hand_computation(target: int) -> None:
    model = hand_model()
    cam = captum_topgap.get_method("gradcam", model, model[0], upsample=False)
    expected = HAND[target] / HAND[target].max()
    assert torch.allclose(cam.attribute(X, target=target)[0, 0], expected, atol=1e-6)


def test_gradcam_and_layer_gradcam_agree_up_to_normalisation(tiny_net, images) -> None:
    layer = tiny_net.features[4]
    ours = captum_topgap.get_method("gradcam", tiny_net, layer).attribute(images, target=[2, 1])
    theirs = captum_topgap.get_method("layer_gradcam", tiny_net, layer).attribute(images, target=[2, 1])
    flat = theirs.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    normalised = (theirs - lo.view(-1, 1, 1, 1)) / (hi - lo).view(-1, 1, 1, 1)
    assert ours.shape == theirs.shape == (2, 1, 8, 8)
    assert torch.allclose(ours, normalised, atol=1e-4)


def test_per_sample_targets_match_single_calls(tiny_net, images) -> None:
    cam = captum_topgap.get_method("gradcam", tiny_net)
    batched = cam.attribute(images, target=torch.tensor([0, 2]))
    assert torch.allclose(batched[0], cam.attribute(images[:1], target=0)[0], atol=1e-6)
    assert torch.allclose(batched[1], cam.attribute(images[1:], target=[2])[0], atol=1e-6)
    assert not torch.allclose(batched[1], cam.attribute(images[1:], target=0)[0])


def test_target_none_explains_the_predicted_class(tiny_net, images) -> None:
    cam = captum_topgap.get_method("saliency", tiny_net)
    predicted = tiny_net.eval()(images).argmax(1)
    assert torch.equal(cam.attribute(images), cam.attribute(images, target=predicted))


def test_the_gradient_of_a_layer_with_no_parameters_before_it_is_captured() -> None:
    """A pooling layer on the input: nothing before it requires gradients. Captum's LayerGradCam handles it;
    pytorch-grad-cam raises AttributeError; this project's core (and Augmented Grad-CAM over it) must too.
    """
    from captum.attr import LayerGradCam

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    x = torch.rand(2, 3, 8, 8)
    ours = captum_topgap.get_method("differentiable_gradcam", net, net[0], upsample=False).attribute(x, target=[0, 1])
    theirs = LayerGradCam(net, net[0]).attribute(x, target=torch.tensor([0, 1]), relu_attributions=True)
    assert torch.allclose(ours, theirs.sum(1, keepdim=True), atol=1e-6) and ours.abs().sum() > 0
    augmented = captum_topgap.get_method("augmented_gradcam", net, net[0], n_augmentations=2, max_rotation=0.0,
                                         max_shift=0.0, registration="max").attribute(x, target=[0, 1])
    assert torch.isfinite(augmented).all() and augmented.abs().sum() > 0
    assert not x.requires_grad and x.grad is None  # the caller's tensor is untouched


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "hirescam", "layercam"])
def test_grad_cam_classes_compute_no_weight_gradient_and_equal_grad_cams_own(name: str, tiny_net, images) -> None:
    """pytorch-grad-cam's own call back-propagates into every weight; the registry's call reads only the layer's
    gradient, so no weight gradient is computed (a tensor hook on each weight would fire) and the maps are the
    grad-cam class's own to 1e-5. Every ``requires_grad`` flag is back afterwards.
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "hirescam": HiResCAM, "layercam": LayerCAM}[name]
    model, layer = tiny_net.eval(), tiny_net.features[4]
    tiny_net.features[0].weight.requires_grad_(False)  # a frozen layer stays frozen, the others trainable
    flags = [p.requires_grad for p in model.parameters()]
    fired: list[int] = []
    handles = [p.register_hook(lambda grad: fired.append(1)) for p in model.parameters() if p.requires_grad]
    ours = captum_topgap.get_method(name, model, layer).attribute(images, target=[2, 1])
    assert fired == [] and [p.requires_grad for p in model.parameters()] == flags
    with cam_class(model, [layer]) as cam:
        theirs = cam(input_tensor=images, targets=[ClassifierOutputTarget(2), ClassifierOutputTarget(1)])
    assert fired  # grad-cam's own call computes the weight gradients the registry's skips
    for handle in handles:
        handle.remove()
    model.zero_grad()
    assert torch.allclose(ours[:, 0], torch.from_numpy(theirs), atol=1e-5)

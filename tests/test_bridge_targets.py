"""The last silent results (issue 34): ``targets=None`` in every grad-cam bridge class is grad-cam's
``ClassifierOutputTarget`` of the predicted class (its logit), and the remaining unclear errors either name the
argument and the fix or, where the input is valid, work.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import captum_topgap
from captum_topgap._state import count_hooks
from captum_topgap.adapters import grad_cam
from captum_topgap.data.transforms import Batch
from captum_topgap.models import ExpansionNet, PerceptionDecoder
from captum_topgap.pooling import TopKPool
from captum_topgap.train.losses import RRR, ReFF, topgap_loss
from captum_topgap.train.objectives import ReFFObjective

from .conftest import TinyNet, tiny_abn, tiny_topgap

BRIDGES = sorted((value for value in vars(grad_cam).values()
                  if isinstance(value, type) and issubclass(value, grad_cam.GradCamBridge)), key=lambda c: c.method)
"""Every grad-cam class the bridge module exposes (``GradCamBridge`` itself explains ``cam``)."""

AUGMENTED = {"n_augmentations": 3, "iterations": 4}


def bridge_case(method: str) -> tuple[nn.Module, list[nn.Module] | None, torch.Tensor]:
    """A tiny model of the kind the method explains, its grad-cam ``target_layers`` and two images."""
    torch.manual_seed(0)
    if method == "topgap_cam":
        return tiny_topgap().eval(), None, torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    if method == "abn_attention":
        return tiny_abn().eval(), None, torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    if method == "expansion_cam":
        model = ExpansionNet(timm.create_model("resnet18", num_classes=3), stages=None).eval()
        return model, None, torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    net = TinyNet().eval()
    if method == "perception_visualization":
        return PerceptionDecoder(net, image_size=8).eval(), None, torch.rand(2, 3, 8, 8,
                                                                              generator=torch.Generator().manual_seed(3))
    return net, [net.features], torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))


CASES = [pytest.param(bridge, {}, id=bridge.__name__) for bridge in BRIDGES] + [
    pytest.param(grad_cam.AugmentedGradCAM, {"base": base}, id=f"AugmentedGradCAM[base={base}]")
    for base in ("recipro_cam", "gradcam++", "layer_gradcam")]


def test_the_cases_cover_every_bridge_class() -> None:
    assert {bridge.__name__ for bridge in BRIDGES} >= {
        "GradCamBridge", "GradCamBridge[topgap_cam]", "GradCamBridge[cam]", "GradCamBridge[recipro_cam]",
        "GradCamBridge[differentiable_gradcam]", "GradCamBridge[expansion_cam]", "GradCamBridge[augmented_gradcam]"}


@pytest.mark.parametrize(("bridge", "options"), CASES)
def test_targets_none_is_classifier_output_target_of_the_predicted_class(bridge: type, options: dict) -> None:
    """grad-cam's own convention: ``targets=None`` IS ``ClassifierOutputTarget(argmax)`` — the same maps."""
    model, layers, images = bridge_case(bridge.method)
    if bridge.method == "augmented_gradcam":
        options = {**AUGMENTED, **options}
    with torch.no_grad():
        predicted = model(images).argmax(dim=1).tolist()
    with bridge(model, layers, **options) as cam:
        by_default = cam(input_tensor=images, targets=None)
        explicit = cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in predicted])
    image = (3,) if bridge.method == "perception_visualization" else ()  # PV is an image (N, H, W, C)
    assert by_default.shape == explicit.shape == (2, *images.shape[-2:], *image)
    assert np.array_equal(by_default, explicit)


def test_recipro_bridge_with_targets_none_reads_the_predicted_logit_of_each_masked_copy() -> None:
    """A hand-made network: the logit of class c at the copy keeping position k is x_c(k), so the map of the
    predicted class 0 is x_0 = (2, 0, 1), min-max (1, 0, 0.5); the softmax probability would give
    (σ(2), σ(0), σ(1)), min-max (1, 0, 0.607).
    """
    identity = nn.Identity()
    net = nn.Sequential(identity, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2, bias=False)).eval()
    with torch.no_grad():
        net[3].weight.copy_(3 * torch.eye(2))  # × 3 positions: the pooled copy times 3 is the kept position
    image = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]]]])
    with grad_cam.ReciproCAM(net, [identity]) as cam:
        maps = cam(input_tensor=image, targets=None)
    assert np.abs(maps - np.array([[[1.0, 0.0, 0.5]]])).max() < 1e-6
    sigmoid = [1 / (1 + math.exp(-v)) for v in (2.0, 0.0, 1.0)]
    assert abs((sigmoid[2] - sigmoid[1]) / (sigmoid[0] - sigmoid[1]) - 0.5) > 0.1  # what today's map read


@pytest.fixture
def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))


def test_kernel_shap_on_one_pixel_images_names_feature_mask_and_the_fix() -> None:
    """The default 8 × 8 grid is one patch on a 1 × 1 image: Captum's coalition sampler has nothing to draw
    (a NaN ``Categorical``). The fix the message gives works, and on a linear model it is exact: φ_c = w_c x_c.
    """
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3, 2)).eval()
    pixel = torch.tensor([[[[1.0]], [[2.0]], [[-1.0]]]])
    method = captum_topgap.get_method("kernel_shap", linear)
    with pytest.raises(ValueError, match=r"`feature_mask`: the default 8 × 8 grid of patches is one patch on 1 × 1 "
                                         r"images; Kernel SHAP needs two groups at least: pass "
                                         r"feature_mask=torch\.arange\(C\)\.view\(1, C, 1, 1\)"):
        method.attribute(pixel, target=1, n_samples=16)
    shap = method.attribute(pixel, target=1, n_samples=64, feature_mask=torch.arange(3).view(1, 3, 1, 1))
    assert torch.allclose(shap.flatten(), linear[1].weight[1].detach() * pixel.flatten(), atol=1e-4)


@pytest.mark.parametrize("name", ["differentiable_gradcam", "positive_gradcam"])
def test_a_score_function_of_the_wrong_arity_names_score_and_its_call(name: str, net, images) -> None:
    method = captum_topgap.get_method(name, net, net.features[4])
    for wrong, reason in ((lambda logits: logits[:, 0], "too many positional arguments"),
                          (lambda logits, owners, extra: logits[:, 0], "missing a required argument: 'extra'")):
        with pytest.raises(TypeError, match=rf"`score` of {name} is called as score\(logits, owners\) .*but "
                                            rf"{reason}; e\.g\. score=lambda logits, owners: logits\[:, 2\]"):
            method.attribute(images, target=1, score=wrong)
    right = method.attribute(images, target=1, score=lambda logits, owners: logits[:, 1])
    assert torch.equal(right, method.attribute(images, target=1))  # the logit of class 1, as score="logit"


def test_shapley_cam_on_a_frozen_model_works_and_leaves_it_frozen(net, images) -> None:
    """After ``features`` the network is linear (GAP + FC): the Hessian-vector product is zero and ShapleyCAM is
    Grad-CAM exactly, on the trainable model and on the frozen one.
    """
    expected = captum_topgap.get_method("gradcam", net, net.features).attribute(images, target=[0, 2])
    trainable = captum_topgap.get_method("shapleycam", net, net.features).attribute(images, target=[0, 2])
    net.requires_grad_(False)
    frozen = captum_topgap.get_method("shapleycam", net, net.features).attribute(images, target=[0, 2])
    assert torch.allclose(trainable, expected, atol=1e-6) and torch.equal(frozen, trainable)
    assert not any(p.requires_grad or p.grad is not None for p in net.parameters())


def test_shapley_cam_on_a_pooling_layer_names_layer_and_leaves_no_hook(net, images) -> None:
    method = captum_topgap.get_method("shapleycam", net, net.pool)
    with pytest.raises(ValueError, match=r"'shapleycam' cannot explain `layer` AdaptiveAvgPool2d: its output goes "
                                         r"straight into a reshape .*pass the layer before it as `layer`"):
        method.attribute(images, target=0)
    assert count_hooks(net) == 0
    assert all(p.requires_grad and p.grad is None for p in net.parameters())


def test_torchscript_top_k_pool_names_k_and_the_maps_positions() -> None:
    scripted = torch.jit.script(TopKPool(5))
    with pytest.raises(torch.jit.Error, match=r"k \(a count of positions\) is larger than the map's H·W positions: "
                                              r"k = 5 for a 2 × 2 map \(4 positions\); use 1 ≤ k ≤ 4, or a float "
                                              r"fraction in \(0, 1\]"):
        scripted(torch.rand(1, 2, 2, 2))
    pooled = scripted(torch.tensor([[[[1.0, 5.0, 3.0], [2.0, 0.0, 4.0]]]]))
    assert torch.equal(pooled, torch.tensor([[3.0]]))  # (5 + 4 + 3 + 2 + 1) / 5


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_topgap_loss_takes_integer_labels_of_any_dtype(dtype: torch.dtype) -> None:
    cam = torch.zeros(2, 3, 4, 4) + 1.0
    loss = topgap_loss(cam.flatten(2).mean(-1), cam, torch.tensor([0, 1], dtype=dtype), sparsity=0.5)
    assert loss.item() == pytest.approx(math.log(3) + 0.5, abs=1e-6)


def test_reff_takes_int32_labels(net, images) -> None:
    reff = ReFF(net, layers=[net.features[2], net.features[5]], weights=(1.0, 1.0))
    mask = torch.zeros(2, 1, 8, 8)
    assert torch.equal(reff(images, torch.tensor([0, 2], dtype=torch.int32), mask),
                       reff(images, torch.tensor([0, 2]), mask))


@pytest.mark.parametrize("term", ["reff", "rrr"])
def test_an_image_without_its_batch_dimension_names_inputs_and_the_fix(term: str, net) -> None:
    layers = [net.features[2], net.features[5]]
    loss = ReFF(net, layers=layers, weights=(1.0, 1.0)) if term == "reff" else RRR(net, layers)
    message = (r"`inputs` must be a batch of images \(N, C, H, W\), got shape \(3, 8, 8\); for one image pass "
               r"inputs\.unsqueeze\(0\), with target\[None\] and mask\[None\]")
    with pytest.raises(ValueError, match=message):
        loss(torch.rand(3, 8, 8), torch.tensor([0]), torch.ones(1, 8, 8))
    batch = Batch(torch.rand(3, 8, 8), torch.tensor([0]), torch.ones(1, 8, 8), torch.tensor([True]))
    with pytest.raises(ValueError, match=message):
        ReFFObjective(loss)(net, batch)

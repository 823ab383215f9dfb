"""Top-GAP CAM through Captum, pytorch-grad-cam and the registry: the same maps, no backward pass."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import captum_topgap
from captum_topgap.adapters.captum import TopGAPCAM as CaptumTopGAPCAM
from captum_topgap.adapters.grad_cam import TopGAPCAM as GradCamTopGAPCAM
from captum_topgap.adapters.grad_cam import TopGAPMapTarget
from captum_topgap.evaluate.diagnostics import topk_evidence
from captum_topgap.models import topgap

from .conftest import tiny_topgap


@pytest.fixture
def model():
    torch.manual_seed(0)
    return topgap("resnet18", num_classes=4, k=8).train()


@pytest.fixture
def x():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_captum_class_returns_the_selected_class_map_upsampled(model, x) -> None:
    target = [1, 3, 0]
    maps = captum_topgap.get_method("topgap_cam", model).attribute(x, target=target)
    with torch.no_grad():
        cam = model.eval().cam(x)
    expected = F.interpolate(cam[torch.arange(3), target][:, None], size=(32, 32), mode="bilinear",
                             align_corners=False)
    assert torch.allclose(maps, expected, atol=1e-6)
    low = CaptumTopGAPCAM(model, upsample=False).attribute(x, target=target)
    assert torch.allclose(low, cam[torch.arange(3), target][:, None], atol=1e-6)


def test_no_backward_pass(model, x) -> None:
    seen = []
    model.head.register_forward_hook(lambda m, i, o: seen.append((torch.is_grad_enabled(), o.requires_grad)))
    CaptumTopGAPCAM(model).attribute(x, target=0)
    assert seen == [(False, False)]


def test_target_none_is_the_predicted_class(model, x) -> None:
    explainer = CaptumTopGAPCAM(model)
    predicted = model.eval()(x).argmax(1)
    assert torch.equal(explainer.attribute(x), explainer.attribute(x, target=predicted))


def test_grad_cam_class_matches_the_captum_class(model, x) -> None:
    model.train()
    target = [2, 0, 1]
    with GradCamTopGAPCAM(model) as cam:
        ours = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])
        same = cam(input_tensor=x, targets=[TopGAPMapTarget(t) for t in target])
    assert model.training, "the grad-cam class restores the model's mode"
    assert ours.shape == (3, 32, 32) and ours.dtype == np.float32 and np.array_equal(ours, same)
    low = CaptumTopGAPCAM(model, upsample=False).attribute(x, target=target).clamp_min(0)[:, 0]
    low = (low - low.flatten(1).min(1).values[:, None, None]) / (
        low.flatten(1).max(1).values - low.flatten(1).min(1).values + 1e-7)[:, None, None]
    import cv2

    expected = scale_cam_image(np.stack([cv2.resize(m.numpy(), (32, 32)) for m in low]))  # grad-cam's aggregate
    assert np.allclose(ours, expected, atol=1e-5)
    assert ours.min() >= 0.0 and ours.max() <= 1.0


def test_grad_cam_class_defaults_to_the_predicted_class_and_supports_aug_smooth(model, x) -> None:
    predicted = model.eval()(x).argmax(1)
    with GradCamTopGAPCAM(model) as cam:
        default = cam(input_tensor=x, targets=None)
        chosen = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in predicted])
        smooth = cam(input_tensor=x, targets=None, aug_smooth=True)
    assert np.array_equal(default, chosen) and smooth.shape == default.shape
    assert not np.array_equal(smooth, default) and smooth.min() >= 0.0 and smooth.max() <= 1.0


def test_map_target_rejects_batched_outputs() -> None:
    with pytest.raises(ValueError, match=r"TopGAPMapTarget expects one image's class maps"):
        TopGAPMapTarget(0)(torch.zeros(2, 3, 4, 4))


def test_non_topgap_model_gets_a_clear_error(tiny_net, images) -> None:
    with pytest.raises(TypeError, match=r"Top-GAP CAM needs a Top-GAP model .*'topgap_resnet18'"):
        captum_topgap.get_method("topgap_cam", tiny_net).attribute(images, target=0)


def test_layer_is_refused() -> None:
    net = tiny_topgap()
    with pytest.raises(ValueError, match=r"`layer` is not used by 'topgap_cam'"):
        captum_topgap.get_method("topgap_cam", net, layer=net.head)


def test_topk_evidence_finds_the_kept_positions_and_the_stage_that_chose_them() -> None:
    model = timm.create_model("topgap_resnet18", num_classes=3, k=4)
    with torch.no_grad():
        for lateral in model.lateral[:2]:  # layer1 and layer2 give nothing; layer3 and layer4 decide
            lateral.weight.zero_()
            lateral.bias.zero_()
    x, labels = torch.rand(2, 3, 32, 32), torch.tensor([0, 2])
    with torch.no_grad():
        cam = model.eval().cam(x)[torch.arange(2), labels]  # (2, 8, 8)
    kept = torch.zeros(2, 64).scatter_(1, cam.flatten(1).topk(4, dim=1).indices, 1.0).view(2, 1, 8, 8)
    on_kept = F.interpolate(kept, size=(32, 32), mode="nearest")
    model.train()
    evidence = topk_evidence(model, x, labels, on_kept)
    assert model.training  # the state contract
    assert evidence["on_object"] == pytest.approx(1.0) and evidence["mask_area"] == pytest.approx(4 / 64)
    assert topk_evidence(model, x, labels, 1 - on_kept)["on_object"] == pytest.approx(0.0)
    assert evidence["positions"] == 64
    assert evidence["stage_positions"] == {"layer1": 64, "layer2": 16, "layer3": 4, "layer4": 1}
    shares = evidence["stage_share"]
    assert shares["layer1"] == shares["layer2"] == 0.0 and sum(shares.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"`labels` \[5\] out of range for a model with 3 outputs"):
        topk_evidence(model, x, torch.tensor([0, 5]), on_kept)
    with pytest.raises(ValueError, match=r"`masks` has shape \(2, 1, 8, 8\) but the images are"):
        topk_evidence(model, x, labels, kept)
    with pytest.raises(TypeError, match=r"topk_evidence needs a Top-GAP network \(timm.create_model.*got ResNet"):
        topk_evidence(timm.create_model("resnet18", num_classes=3), x, labels, on_kept)

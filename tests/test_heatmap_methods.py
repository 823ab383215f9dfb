"""Augmented Grad-CAM, Recipro-CAM, CAM and ERF against answers known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import Saliency
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import captum_topgap
from captum_topgap.adapters import grad_cam as gc_adapters
from captum_topgap.evaluate.metrics import mask_iou, mean_mask_iou
from captum_topgap.methods.augmented import objective, sample_augmentations, super_resolve, warp
from captum_topgap.methods.erf import erf_at


class LowResShape(nn.Module):
    """A 'network' whose layer output is the first channel seen at 1/8 resolution; GAP + FC on top.

    Grad-CAM of class 0 at ``low`` is therefore the low-resolution image of the shape itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self.low = nn.Sequential(nn.Conv2d(3, 1, 1, bias=False), nn.AvgPool2d(8))
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.low[0].weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.low(x).mean(dim=(2, 3)))


def shape_image(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((yy - 30) ** 2 + (xx - 26) ** 2) < 13 ** 2
    bar = (yy > 40) & (yy < 48) & (xx > 36) & (xx < 58)
    mask = (disk | bar)[None, None]
    return mask.float().expand(1, 3, size, size).clone(), mask


def test_augmented_gradcam_recovers_a_known_shape_better_than_upsampling() -> None:
    model, (image, mask) = LowResShape(), shape_image()
    single = captum_topgap.get_method("gradcam", model, model.low).attribute(image, target=0)  # bilinear upsampled
    augmented = captum_topgap.get_method("augmented_gradcam", model, model.low, n_augmentations=24,
                                         solver="primal_dual", iterations=150, seed=0)
    recovered = augmented.attribute(image, target=0)
    assert recovered.shape == (1, 1, 64, 64)
    assert float(mask_iou(recovered, mask)) > float(mask_iou(single, mask))  # measured: 0.849 vs 0.834
    single_mean, recovered_mean = float(mean_mask_iou(single, mask)), float(mean_mask_iou(recovered, mask))
    assert recovered_mean > single_mean + 0.08, (recovered_mean, single_mean)  # measured: 0.719 vs 0.596


def test_primal_dual_reaches_the_adam_reference_objective_sooner() -> None:
    _, mask = shape_image(32)
    theta = sample_augmentations(8, 0.5, 4.0, (32, 32), seed=1)
    g = F.interpolate(warp(mask.float().expand(8, 1, 32, 32), theta), size=(4, 4), mode="bilinear",
                      antialias=True, align_corners=False)[None]
    g = g / g.flatten(2).max(2).values[..., None, None, None]
    _, adam = super_resolve(g, theta, (32, 32), solver="adam")
    _, fast = super_resolve(g, theta, (32, 32), solver="primal_dual", iterations=200, tol=0.0)
    assert len(adam) == 201 and adam[-1] < adam[0]  # h₀ and the 200 reference steps
    assert len(fast) == 41  # warm start at 8 × 8, then 200 // 5 refinements at 32 × 32
    reached = next(i for i, value in enumerate(fast) if value <= adam[-1])
    assert reached < 10 and fast[-1] < 0.9 * adam[-1]


def test_objective_terms() -> None:
    theta = sample_augmentations(1, 0.0, 0.0, (4, 4))
    h = torch.zeros(1, 1, 4, 4)
    h[..., 1, 1] = 2.0
    g = torch.zeros(1, 1, 1, 4, 4)
    # fit ½·4, TV = 4 jumps of 2 (λ = 0.5 -> 4), μ/2·4 with μ = 0.25 -> 0.5
    assert torch.allclose(objective(h, g, theta, 0.5, 0.25), torch.tensor([2.0 + 4.0 + 0.5]))


@pytest.mark.parametrize("registration", ["max", "avg"])
def test_registration_baselines_with_identity_warps_are_upsampling(registration: str) -> None:
    model, (image, _) = LowResShape(), shape_image()
    method = captum_topgap.get_method("augmented_gradcam", model, model.low, n_augmentations=3, max_rotation=0.0,
                                      max_shift=0.0, registration=registration)
    single = captum_topgap.get_method("gradcam", model, model.low, upsample=False).attribute(image, target=0)
    expected = F.interpolate(single / single.max(), size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(method.attribute(image, target=0), expected, atol=1e-5)


def test_augmented_over_any_registered_layer_method_and_bad_base(tiny_net, images) -> None:
    """With identity warps and max registration the result is the base's own map, normalised and upsampled:
    each base is really the one used.
    """
    for base in ("gradcam++", "layer_gradcam", "recipro_cam"):
        out = captum_topgap.get_method("augmented_gradcam", tiny_net, base=base, n_augmentations=2, max_rotation=0.0,
                                       max_shift=0.0, registration="max").attribute(images, target=[0, 1])
        single = captum_topgap.get_method(base, tiny_net, upsample=False).attribute(images, target=[0, 1])
        peak = single.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1, 1)
        assert torch.allclose(out, F.interpolate(single / peak, size=(8, 8), mode="bilinear"), atol=1e-5), base
    with pytest.raises(ValueError, match=r"`base` must be a registered layer CAM"):
        captum_topgap.get_method("augmented_gradcam", tiny_net, base="saliency")


def test_augmented_copies_go_through_the_network_in_batches(tiny_net, images) -> None:
    sizes = []
    tiny_net.features.register_forward_hook(lambda m, i, o: sizes.append(o.shape[0]))
    captum_topgap.get_method("augmented_gradcam", tiny_net, n_augmentations=5, batch_size=4,
                             iterations=2).attribute(images, target=0)
    assert [s for s in sizes if s > 1] == [4, 4, 2]


class Tail(nn.Module):
    """layer (identity on a 2-channel 3 × 3 map) -> GAP -> FC: Recipro-CAM is computable by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Identity()
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 1.5], [-1.0, 0.0]]))
            self.fc.bias.copy_(torch.tensor([0.1, 0.0, -0.2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer(x).mean(dim=(2, 3)))


def recipro_by_hand(net: Tail, x: torch.Tensor, target: int, gaussian: bool) -> torch.Tensor:
    kernel = [[1 / 16, 1 / 8, 1 / 16], [1 / 8, 1 / 4, 1 / 8], [1 / 16, 1 / 8, 1 / 16]]
    out = torch.zeros(3, 3)
    for i in range(3):
        for j in range(3):
            copy = torch.zeros_like(x)
            if gaussian:
                for di in (-1, 0, 1):
                    for dj in (-1, 0, 1):
                        if 0 <= i + di < 3 and 0 <= j + dj < 3:
                            copy[0, :, i + di, j + dj] = x[0, :, i, j] * kernel[di + 1][dj + 1]
            else:
                copy[0, :, i, j] = x[0, :, i, j]
            out[i, j] = torch.softmax(net.fc(copy.mean(dim=(2, 3))), dim=1)[0, target]
    return out


@pytest.mark.parametrize("gaussian", [False, True])
def test_recipro_cam_equals_its_definition_with_per_image_targets(gaussian: bool) -> None:
    net = Tail()
    x = torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    targets = [2, 0, 1]
    method = captum_topgap.get_method("recipro_cam", net, net.layer, gaussian=gaussian, upsample=False,
                                      chunk_size=4, input_size=(2, 3, 3))
    maps = method.attribute(x, target=targets)
    for n, target in enumerate(targets):
        assert torch.allclose(maps[n, 0], recipro_by_hand(net, x[n:n + 1], target, gaussian), atol=1e-6)


def test_recipro_cam_batches_the_tail() -> None:
    net, seen = Tail(), []
    net.fc.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    captum_topgap.get_method("recipro_cam", net, net.layer, chunk_size=18, input_size=(2, 3, 3)).attribute(
        torch.randn(4, 2, 3, 3), target=0)
    assert seen[-2:] == [18, 18]  # 2 images × 9 positions per forward of the tail
    assert all(size == 1 for size in seen[:-2])  # before that only one-image probes (layer check, classes)


def test_cam_equals_gradcam_up_to_scale_on_gap_fc(tiny_net, images) -> None:
    cam = captum_topgap.get_method("cam", tiny_net, upsample=False).attribute(images, target=[1, 2])
    grad_cam = captum_topgap.get_method("layer_gradcam", tiny_net, tiny_net.features, upsample=False).attribute(
        images, target=[1, 2])
    positions = cam.shape[-1] * cam.shape[-2]
    assert torch.allclose(cam.clamp_min(0) / positions, grad_cam, atol=1e-6)


def test_cam_refuses_a_network_without_gap_fc(images) -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"CAM needs a GAP\+FC network.*'gradcam'"):
        captum_topgap.get_method("cam", net, net[1]).attribute(images, target=0)
    with pytest.raises(ValueError, match=r"has no nn.Linear"):
        captum_topgap.get_method("cam", nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                                 input_size=(3, 8, 8)).attribute(images, target=0)


def test_erf_is_the_summed_absolute_input_gradient(tiny_net, images) -> None:
    ours = captum_topgap.get_method("erf", tiny_net).attribute(images, target=[0, 2])
    reference = Saliency(tiny_net.eval()).attribute(images, target=[0, 2], abs=True).sum(1, keepdim=True)
    assert torch.allclose(ours, reference, atol=1e-7)


def test_erf_at_batched_equals_single_backward_passes(tiny_net) -> None:
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    positions = [(0, 0), (3, 4), (7, 7)]
    tiny_net.eval()
    batched = erf_at(tiny_net, x, tiny_net.features, positions)
    for p, position in enumerate(positions):
        assert torch.allclose(batched[0, p], erf_at(tiny_net, x, tiny_net.features, [position])[0, 0], atol=1e-7)


def test_erf_of_a_conv_stack_covers_its_receptive_field() -> None:
    stack = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.Conv2d(1, 1, 3, padding=1, bias=False))
    for conv in stack:
        nn.init.ones_(conv.weight)
    field = erf_at(stack, torch.rand(1, 1, 11, 11), stack[1], [(5, 5)])[0, 0]
    support = field > 0
    assert support.sum() == 25 and support[3:8, 3:8].all()
    assert field[5, 5] == 9 and field[3, 3] == 1  # paths through the two 3 × 3 kernels


def test_grad_cam_classes_share_the_core(tiny_net, images) -> None:
    def logit(logits: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:  # ClassifierOutputTarget's scalar
        return logits[torch.arange(len(logits)), torch.tensor([1, 0])[owners]]

    for name, cls, options in (("cam", gc_adapters.CAM, {"target": [1, 0]}),
                               ("recipro_cam", gc_adapters.ReciproCAM, {"target": None, "score": logit})):
        low = captum_topgap.get_method(name, tiny_net, tiny_net.features, upsample=False).attribute(images, **options)
        # grad-cam scales each layer's map, then the maximum-with-0 mean over layers again (its aggregate)
        expected = scale_cam_image(scale_cam_image(low[:, 0].clamp_min(0).numpy(), (8, 8)))
        with cls(tiny_net, [tiny_net.features]) as cam:
            out = cam(input_tensor=images, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(0)])
        assert np.allclose(out, expected, atol=1e-6), name
    assert tiny_net.training


def test_grad_cam_targets_must_name_a_class(tiny_net, images) -> None:
    with gc_adapters.CAM(tiny_net, [tiny_net.features]) as cam, pytest.raises(
            TypeError, match=r"target function is not available for 'cam', which explains one class: pass "
                         r"ClassifierOutputTarget\(c\)"):
        cam(input_tensor=images, targets=[lambda out: out.sum()] * 2)


@pytest.mark.parametrize("solver", ["primal_dual", "adam"])
def test_augmented_gradcam_of_an_image_does_not_depend_on_its_batch(solver: str) -> None:
    """Image 0 alone and image 0 beside another image: the same map (each image stops on its own)."""
    import timm

    from captum_topgap import get_method

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=4).eval()
    x = torch.rand(2, 3, 64, 64)
    method = get_method("augmented_gradcam", model, n_augmentations=8, iterations=30, solver=solver)
    alone = method.attribute(x[:1], target=1)
    together = method.attribute(x, target=[1, 3])
    assert torch.allclose(alone[0], together[0], atol=1e-5), (alone[0] - together[0]).abs().max()

"""The ReFF term: its definition, its gradient (double back-propagation) and its errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import captum_topgap
from captum_topgap._state import count_hooks
from captum_topgap.losses import ReFF
from captum_topgap.methods.gradcam import grad_cam_maps


class Smooth(nn.Module):
    """conv-tanh-conv-tanh-GAP-FC in float64: smooth, so finite differences are meaningful."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh())
        self.block2 = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1, stride=2), nn.Tanh())
        self.fc = nn.Linear(5, 3)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block2(self.block1(x)).mean(dim=(2, 3)))


@pytest.fixture
def setup():
    model = Smooth().train()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2])
    return model, x, y, ReFF(model, [model.block1, model.block2], weights=(1.0, 2.0))


def test_zero_inside_an_all_ones_mask(setup) -> None:
    model, x, y, reff = setup
    assert float(reff(x, y, torch.ones(2, 1, 8, 8, dtype=torch.float64))) == 0.0


def test_soft_masks_scale_the_reff_term_linearly(setup) -> None:
    model, x, y, reff = setup
    outside = reff(x, y, torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    half = reff(x, y, torch.full((2, 1, 8, 8), 0.5, dtype=torch.float64))
    assert float(outside) > 0 and torch.allclose(half, 0.5 * outside)


def test_definition_of_the_three_variants(setup) -> None:
    model, x, y, _ = setup
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    mask[..., 2:6, 2:6] = 1.0
    _, maps = grad_cam_maps(model, x, y, [model.block1, model.block2])
    expected = {
        "reff": sum(w * (m * (1 - mask)).flatten(1).norm(dim=1).mean() for w, m in zip((1, 2), maps, strict=True)),
        "l1": sum(w * (m - mask).abs().flatten(1).sum(1).mean() for w, m in zip((1, 2), maps, strict=True)),
        "l2": sum(w * (m - mask).pow(2).flatten(1).sum(1).mean() for w, m in zip((1, 2), maps, strict=True)),
    }
    for variant, value in expected.items():
        term = ReFF(model, [model.block1, model.block2], (1.0, 2.0), variant)(x, y, mask)
        assert torch.allclose(term, value), variant


def test_gradient_is_nonzero_and_finite_when_the_mask_excludes_the_explanation(setup) -> None:
    model, x, y, reff = setup
    reff(x, y, torch.zeros(2, 1, 8, 8, dtype=torch.float64)).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["fc.bias"] is None  # ∂y/∂A, hence Grad-CAM, does not depend on the output bias
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for n, g in grads.items() if n != "fc.bias")
    assert model.block1[0].weight.grad.abs().sum() > 0  # reached through the double back-propagation


def test_gradient_matches_finite_differences(setup) -> None:
    model, x, y, reff = setup
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    mask[..., :4, :] = 0.7
    weight = model.block1[0].weight
    (analytic,) = torch.autograd.grad(reff(x, y, mask), weight)
    for index in [(0, 0, 1, 1), (2, 1, 0, 2), (3, 2, 2, 0)]:
        original = weight.data[index].item()
        values = []
        for delta in (1e-6, -1e-6):
            weight.data[index] = original + delta
            values.append(float(reff(x, y, mask)))
        weight.data[index] = original
        numeric = (values[0] - values[1]) / 2e-6
        assert analytic[index].item() == pytest.approx(numeric, rel=1e-4, abs=1e-8)


def test_train_mode_kept_and_no_hook_left(setup) -> None:
    model, x, y, reff = setup
    reff(x, y, torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    assert model.training and count_hooks(model) == 0


def test_wrong_mask_size_and_values_are_rejected(setup) -> None:
    model, x, y, reff = setup
    with pytest.raises(ValueError, match=r"`mask` has shape \(2, 1, 4, 4\) but the images are \(2, 3, 8, 8\)"):
        reff(x, y, torch.ones(2, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"`mask` values must lie in \[0, 1\]"):
        reff(x, y, torch.full((2, 1, 8, 8), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"`variant` must be 'reff', 'l1' or 'l2'"):
        ReFF(model, [model.block1], (1.0,), variant="l3")
    with pytest.raises(ValueError, match=r"`weights` has 4 entries for 2 layers"):
        ReFF(model, [model.block1, model.block2])


def test_default_layers_are_the_resnet_stages() -> None:
    import timm

    model = timm.create_model("resnet18", num_classes=3)
    assert ReFF(model).layers == [model.layer1, model.layer2, model.layer3, model.layer4]
    with pytest.raises(ValueError, match=r"pass `layers=`"):
        ReFF(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_the_core_is_grad_cam(tiny_net, images) -> None:
    """Up to normalisation the differentiable core equals pytorch-grad-cam's Grad-CAM (registry 'gradcam')."""
    tiny_net.eval()
    _, (ours,) = grad_cam_maps(tiny_net, images, torch.tensor([2, 1]), [tiny_net.features], upsample=False)
    theirs = captum_topgap.get_method("gradcam", tiny_net, tiny_net.features, upsample=False).attribute(
        images, target=[2, 1])
    flat = ours.flatten(1)
    normalised = (flat - flat.min(1, keepdim=True).values) / (flat.max(1, keepdim=True).values
                                                              - flat.min(1, keepdim=True).values)
    assert torch.allclose(normalised.view_as(ours), theirs, atol=1e-5)

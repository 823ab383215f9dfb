"""More localisation tools: RISE, ``smooth:`` composition over Captum's NoiseTunnel, positive-gradient Grad-CAM."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import captum_topgap
from captum_topgap.methods.gradcam import grad_cam_maps
from captum_topgap.methods.rise import rise, rise_masks

from .conftest import TinyNet


class CornerScore(nn.Module):
    """Class 0's logit is 20 × the mean of the top-left 4 × 4 corner; class 1's is a constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        corner = x[:, :, :4, :4].mean(dim=(1, 2, 3))
        return torch.stack([20 * corner, torch.full_like(corner, 5.0)], dim=1)


def test_rise_saliency_is_highest_on_the_region_the_score_reads() -> None:
    image = torch.ones(1, 3, 16, 16)
    saliency = rise(CornerScore(), image, torch.tensor([0]), n_masks=400, cell_size=4, seed=1)[0, 0]
    inside, outside = saliency[:4, :4], torch.ones(16, 16, dtype=torch.bool)
    outside[:6, :6] = False
    assert inside.mean() > saliency[outside].mean() + 0.1
    assert divmod(int(saliency.argmax()), 16)[0] < 4 and divmod(int(saliency.argmax()), 16)[1] < 4


def test_rise_follows_its_formula_and_its_seed() -> None:
    constant = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with torch.no_grad():
        constant[1].weight.zero_()
        constant[1].bias.copy_(torch.tensor([0.0, 1.0]))
    probability = torch.tensor([0.0, 1.0]).softmax(0)[1]
    masks = rise_masks(50, 0.3, 4, 8, 8, 7)
    saliency = rise(constant, torch.rand(1, 3, 8, 8), torch.tensor([1]), n_masks=50, p=0.3, cell_size=4, seed=7,
                    batch_size=16)
    assert torch.allclose(saliency[0], probability * masks.sum(0) / (50 * 0.3), atol=1e-6)
    x = torch.rand(2, 3, 8, 8)
    net = TinyNet().eval()  # the core leaves the mode to its caller; the registered class switches to eval
    assert torch.equal(rise(net, x, torch.tensor([0, 1]), n_masks=20, seed=3),
                       rise(net, x, torch.tensor([0, 1]), n_masks=20, seed=3))
    assert not torch.equal(rise_masks(20, 0.5, 8, 8, 8, 3), rise_masks(20, 0.5, 8, 8, 8, 4))
    with pytest.raises(ValueError, match=r"`p` must be a finite number > 0 and ≤ 1, got 1.5"):
        rise_masks(4, 1.5, 4, 8, 8, 0)


def test_rise_is_registered() -> None:
    method = captum_topgap.get_method("rise", CornerScore(), n_masks=64, cell_size=4)
    assert method.attribute(torch.ones(2, 3, 16, 16), target=0).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("name", ["gradcam++", "saliency", "positive_gradcam"])
def test_smooth_with_zero_noise_is_the_method_itself(name: str, tiny_net, images) -> None:
    plain = captum_topgap.get_method(name, tiny_net).attribute(images, target=[0, 2])
    smooth = captum_topgap.get_method(f"smooth:{name}", tiny_net, nt_samples=4, stdevs=0.0)
    assert torch.allclose(smooth.attribute(images, target=[0, 2]), plain, rtol=1e-6, atol=1e-7)


def test_smooth_is_the_mean_over_the_noisy_inputs(tiny_net, images) -> None:
    smooth = captum_topgap.get_method("smooth:gradcam", tiny_net, nt_samples=5, stdevs=0.2)
    seen: list[torch.Tensor] = []
    inner = smooth.method._attribute

    def recording(inputs: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
        seen.append(inputs.clone())
        return inner(inputs, target, **kwargs)

    smooth.method._attribute = recording
    result = smooth.attribute(images, target=[0, 2])
    noisy = torch.cat(seen)
    assert noisy.shape[0] == 10 and not torch.equal(noisy[0], images[0])
    plain = captum_topgap.get_method("gradcam", tiny_net)
    manual = torch.stack([torch.stack([plain.attribute(noisy[5 * i + s: 5 * i + s + 1], target=[t])[0]
                                       for s in range(5)]).mean(0) for i, t in enumerate([0, 2])])
    assert torch.allclose(result, manual, atol=1e-6)


def test_smooth_composes_with_the_plugins_methods_and_checks_its_prefix(tiny_net, images) -> None:
    smooth = captum_topgap.get_method("smooth:augmented_gradcam", tiny_net, nt_samples=2, stdevs=0.1,
                                      n_augmentations=3, iterations=4)
    assert smooth.attribute(images, target=1).shape == (2, 1, 8, 8) and smooth.layer is tiny_net.features
    with pytest.raises(ValueError, match=r"unknown composition 'blur' in 'blur:gradcam'; known: \[.*'smooth:NAME'"):
        captum_topgap.get_method("blur:gradcam", tiny_net)


def test_positive_gradcam_weights_channels_by_the_mean_positive_gradient(tiny_net, images) -> None:
    layer = tiny_net.features
    target = torch.tensor([0, 2])
    captured = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.setdefault("a", out))
    tiny_net.eval()
    score = tiny_net(images).gather(1, target[:, None]).sum()
    handle.remove()
    grad = torch.autograd.grad(score, captured["a"])[0]
    expected = torch.relu((grad.clamp_min(0).mean((2, 3), keepdim=True) * captured["a"]).sum(1, keepdim=True))
    _, maps = grad_cam_maps(tiny_net, images, target, [layer], upsample=False, weighting="positive")
    assert torch.allclose(maps[0], expected.detach(), atol=1e-6)
    registered = captum_topgap.get_method("positive_gradcam", tiny_net).attribute(images, target=[0, 2])
    assert torch.allclose(registered, torch.nn.functional.interpolate(expected, size=(8, 8), mode="bilinear"),
                          atol=1e-6)
    with pytest.raises(ValueError, match="`weighting` must be 'mean' or 'positive'"):
        grad_cam_maps(tiny_net, images, target, [layer], weighting="abs")

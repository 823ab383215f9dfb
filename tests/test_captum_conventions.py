"""Captum's conventions, exercised with Captum's own tools: ``captum.metrics`` on registered methods, tuples
in and out, ``return_convergence_delta`` and ``additional_forward_args`` for every method.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradCam, NoiseTunnel
from captum.metrics import infidelity, sensitivity_max
from torch import nn

import captum_topgap

from .conftest import FAST, TinyNet, tiny_topgap

METRIC_METHODS = ["gradcam", "layer_gradcam", "differentiable_gradcam", "recipro_cam", "cam", "saliency",
                  "integrated_gradients", "augmented_gradcam"]


@pytest.mark.parametrize("name", METRIC_METHODS)
def test_sensitivity_max_takes_attribute_as_it_is(name: str, tiny_net, images) -> None:
    """Captum calls ``explanation_func`` with a 1-tuple of perturbed inputs and reads a tuple back."""
    method = captum_topgap.get_method(name, tiny_net.eval())
    torch.manual_seed(0)
    score = sensitivity_max(method.attribute, images, target=[0, 2], n_perturb_samples=3, **FAST.get(name, {}))
    assert score.shape == (2,) and torch.isfinite(score).all() and (score >= 0).all()


@pytest.mark.parametrize("name", ["gradcam", "recipro_cam", "saliency"])
def test_infidelity_with_the_documented_expansion(name: str, tiny_net, images) -> None:
    """A CAM map (N, 1, H, W) is expanded to the input's shape; a pixel method's map already has it."""
    model = tiny_net.eval()
    maps = captum_topgap.get_method(name, model).attribute(images, target=[0, 2])

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = 0.01 * torch.randn_like(inputs)
        return noise, inputs - noise

    torch.manual_seed(0)
    score = infidelity(model, perturb, images, maps.expand_as(images), target=[0, 2], n_perturb_samples=4)
    assert score.shape == (2,) and torch.isfinite(score).all()


@pytest.mark.parametrize("name", ["gradcam", "saliency", "recipro_cam", "topgap_cam"])
def test_tuple_in_tuple_out_tensor_in_tensor_out(name: str, tiny_net, images) -> None:
    method = captum_topgap.get_method(name, tiny_topgap() if name == "topgap_cam" else tiny_net)
    as_tensor = method.attribute(images, target=1)
    as_tuple = method.attribute((images,), target=1)
    assert isinstance(as_tensor, torch.Tensor) and isinstance(as_tuple, tuple) and len(as_tuple) == 1
    assert torch.equal(as_tuple[0], as_tensor)
    with pytest.raises(ValueError, match=r"`inputs` must be one image tensor or a 1-tuple of it"):
        method.attribute((images, images), target=1)


def test_return_convergence_delta_through_the_registry(tiny_net, images) -> None:
    model = tiny_net.eval()
    ours, delta = captum_topgap.get_method("integrated_gradients", model).attribute(
        images, target=[0, 2], n_steps=8, return_convergence_delta=True)
    theirs, their_delta = IntegratedGradients(model).attribute(images, target=[0, 2], n_steps=8,
                                                               return_convergence_delta=True)
    assert torch.allclose(ours, theirs) and torch.allclose(delta, their_delta) and delta.shape == (2,)
    with pytest.raises(ValueError, match=r"`return_convergence_delta` is not available for 'gradcam'"):
        captum_topgap.get_method("gradcam", model).attribute(images, target=0, return_convergence_delta=True)


def test_noise_tunnel_over_a_registered_method_matches_captums_own(tiny_net, images) -> None:
    model = tiny_net.eval()
    layer = model.features[4]
    torch.manual_seed(0)
    ours = NoiseTunnel(captum_topgap.get_method("layer_gradcam", model, layer=layer, upsample=False)).attribute(
        images, target=1, nt_samples=3, stdevs=0.1)
    torch.manual_seed(0)
    theirs = NoiseTunnel(LayerGradCam(model, layer)).attribute(images, target=1, nt_samples=3, stdevs=0.1,
                                                               relu_attributions=True)  # the registry default
    assert torch.allclose(ours, theirs, atol=1e-6)


class GainNet(TinyNet):
    """TinyNet whose forward takes an extra argument: ``model(x, gain)`` classifies ``gain · x``."""

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:  # type: ignore[override]
        """Logits of the scaled images."""
        return super().forward(x * gain)


class Bound(nn.Module):
    """The same network with ``gain`` fixed: what ``additional_forward_args=(gain,)`` must amount to."""

    def __init__(self, net: nn.Module, gain: float) -> None:
        super().__init__()
        self.net, self.gain = net, gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped network at the fixed gain."""
        return self.net(x, self.gain)


ARG_METHODS = [n for n in captum_topgap.list_methods()
               if captum_topgap.method_spec(n).kind != "model"]


@pytest.mark.parametrize("name", ARG_METHODS)
def test_additional_forward_args_reach_every_forward(name: str, images) -> None:
    """Label probe, layer trace and the method's own forwards all see the extra argument: the maps equal
    those of the network with the argument bound, and differ from another argument's.
    """
    torch.manual_seed(0)
    net = GainNet().eval()
    options = FAST.get(name, {})

    def run(model: nn.Module, **extra: object) -> torch.Tensor:
        torch.manual_seed(1)
        np.random.seed(1)  # grad-cam's RandomCAM
        return captum_topgap.get_method(name, model).attribute(images, target=None, **extra, **options)

    with_args = run(net, additional_forward_args=(3.0,))
    assert close(with_args, run(Bound(net, 3.0)))
    if name not in ("fullgrad", "randomcam", "lime"):  # bias maps, random weights, all-zero with 8 samples
        assert not close(with_args, run(net, additional_forward_args=(0.2,)))


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float rounding, relative to the maps' scale (some methods' maps are ~1e-8)."""
    scale = max(float(a.abs().max()), float(b.abs().max()))
    return float((a - b).abs().max()) <= 1e-4 * scale


def test_expansion_cam_refuses_additional_forward_args(images) -> None:
    from captum_topgap.models import ExpansionNet

    expansion = ExpansionNet(TinyNet(), stages=["features.2", "features"])
    with pytest.raises(ValueError, match=r"`additional_forward_args` is not supported by 'expansion_cam'"):
        captum_topgap.get_method("expansion_cam", expansion).attribute(images, target=0,
                                                                       additional_forward_args=(2.0,))

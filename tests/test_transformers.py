"""Vision transformers as pytorch-grad-cam's tutorial explains them: a timm ViT, the last block's ``norm1``
and a reshape of its patch tokens to their grid — through the registry and through the grad-cam classes.
"""

from __future__ import annotations

import pytest
import timm
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import captum_topgap
from captum_topgap.adapters.grad_cam import DifferentiableGradCAM, ReciproCAM


def tutorial_reshape(tensor: torch.Tensor, height: int = 4, width: int = 4) -> torch.Tensor:
    """pytorch-grad-cam's ViT tutorial: drop the class token, tokens to a grid, channels first."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


@pytest.fixture(scope="module")
def vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=5).eval()


@pytest.fixture(scope="module")
def pictures() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ["gradcam", "differentiable_gradcam", "gradcam++", "xgradcam"])
def test_default_layer_of_a_vit_is_the_last_norm1_with_its_tokens_reshaped(name: str, vit, pictures) -> None:
    method = captum_topgap.get_method(name, vit)
    maps = method.attribute(pictures, target=[1, 3])
    assert method.layer_name == "blocks.11.norm1"
    assert maps.shape == (2, 1, 64, 64) and torch.isfinite(maps).all() and maps.amax() > 0


def test_registry_gradcam_equals_the_grad_cam_tutorial(vit, pictures) -> None:
    ours = captum_topgap.get_method("gradcam", vit, upsample=False).attribute(pictures, target=[1, 3])[:, 0]
    with GradCAM(vit, [vit.blocks[-1].norm1], reshape_transform=tutorial_reshape) as cam:
        cam.get_target_width_height = lambda _: (4, 4)  # compare at the grid, as ours with upsample=False
        theirs = cam(pictures, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(3)])
    assert torch.allclose(ours, torch.from_numpy(theirs), atol=1e-5)


def test_differentiable_gradcam_is_grad_cam_before_scaling(vit, pictures) -> None:
    ours = captum_topgap.get_method("differentiable_gradcam", vit, upsample=False).attribute(pictures, target=[1, 3])
    low, high = ours.flatten(1).amin(1).view(-1, 1, 1, 1), ours.flatten(1).amax(1).view(-1, 1, 1, 1)
    scaled = (ours - low) / (high - low)  # grad-cam's min-max scaling
    grad_cam = captum_topgap.get_method("gradcam", vit, upsample=False).attribute(pictures, target=[1, 3])
    assert torch.allclose(scaled, grad_cam, atol=1e-4)


def test_grad_cam_side_classes_apply_reshape_transform(vit, pictures) -> None:
    calls: list[tuple[int, ...]] = []

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(tokens.shape))
        return tutorial_reshape(tokens)

    targets = [ClassifierOutputTarget(1), ClassifierOutputTarget(3)]
    with DifferentiableGradCAM(vit, [vit.blocks[-1].norm1], reshape_transform=reshape) as cam:
        ours = cam(input_tensor=pictures, targets=targets)
    with GradCAM(vit, [vit.blocks[-1].norm1], reshape_transform=tutorial_reshape) as cam:
        theirs = cam(input_tensor=pictures, targets=targets)
    assert calls and all(shape[1:] == (17, 192) for shape in calls)  # the tokens, then the grid
    assert ours.shape == theirs.shape == (2, 64, 64) and abs(ours - theirs).max() < 1e-3
    with pytest.raises(ValueError, match=r"`reshape_transform` is not supported by 'recipro_cam'"):
        ReciproCAM(vit, [vit.blocks[-1].norm1], reshape_transform=reshape)


def test_a_reshape_is_applied_before_the_spatial_check(vit, pictures) -> None:
    """With an explicit layer and reshape the check sees the grid; without the reshape, a clear error."""
    method = captum_topgap.get_method("gradcam", vit, layer="blocks.5.norm1", reshape_transform=tutorial_reshape)
    assert method.attribute(pictures, target=0).shape == (2, 1, 64, 64)
    with pytest.raises(ValueError, match=r"`layer` .* has no spatial output .* reshape_transform= for a transformer"):
        captum_topgap.get_method("gradcam", vit, layer="head").attribute(pictures, target=0)


def test_captum_layer_classes_refuse_transformer_tokens(vit, pictures) -> None:
    with pytest.raises(ValueError, match=r"'layer_gradcam' cannot reshape a transformer's tokens.*use 'gradcam'"):
        captum_topgap.get_method("layer_gradcam", vit).attribute(pictures, target=0)
    with pytest.raises(ValueError, match=r"`reshape_transform` is not supported by 'layer_gradcam'"):
        captum_topgap.get_method("layer_gradcam", vit, reshape_transform=tutorial_reshape)

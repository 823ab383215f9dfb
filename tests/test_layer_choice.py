"""The default layer depends on the images' size, never on the order of calls (issue: reading ``.layer_name``
first probed a mobilenet at 224 px and fixed a layer that is 1 × 1 at 32 px, so every map was zero).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import timm
import torch
import torchvision
from torch import nn

import captum_topgap

MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "torchvision-mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(weights=None, num_classes=5), 32),
    "timm-resnet18": (lambda: timm.create_model("resnet18", num_classes=5), 32),
    "timm-vit-img_size-64": (lambda: timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=5), 64),
}


@pytest.mark.parametrize("name", MODELS)
def test_the_layer_is_the_same_whichever_is_read_first(name: str) -> None:
    build, size = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    called_first = captum_topgap.get_method("gradcam", model)
    maps_first = called_first.attribute(images, target=[0, 1])
    read_first = captum_topgap.get_method("gradcam", model)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        _ = read_first.layer_name
        maps_after_read = read_first.attribute(images, target=[0, 1])
    assert read_first.layer_name == called_first.layer_name
    assert torch.equal(maps_after_read, maps_first)
    assert float(maps_first.std()) > 0


def test_a_provisional_layer_replaced_at_the_first_call_is_named_in_a_warning() -> None:
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=5).eval()
    method = captum_topgap.get_method("gradcam", model)
    assert method.layer_name == "features"  # 7 × 7 for the 224-px probe
    with pytest.warns(UserWarning, match=r"reported 'features' for a \(224, 224\) probe; at the \(32, 32\) images "
                                         r"explained the default layer is 'features\.9\.block\.0', which is used\. "
                                         r"Pass input_size=\(C, H, W\)") as record:
        method.attribute(torch.rand(1, 3, 32, 32), target=0)
    assert method.layer_name == "features.9.block.0"
    assert record[0].filename == __file__  # the warning points at the caller's line, not into Captum's wrapper


def test_input_size_fixes_the_choice_before_and_at_the_first_call() -> None:
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=5).eval()
    declared = captum_topgap.get_method("gradcam", model, input_size=(3, 32, 32))
    assert declared.layer_name == "features.9.block.0"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        declared.attribute(torch.rand(1, 3, 32, 32), target=0)
    assert declared.layer_name == "features.9.block.0"


def test_a_vit_built_for_64_px_is_probed_at_64_px() -> None:
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=3)
    assert captum_topgap.get_method("gradcam", vit).layer_name == "blocks.11.norm1"
    assert captum_topgap.get_method("recipro_cam", vit).layer_name == "blocks.11.norm1"


def test_a_probe_the_model_cannot_take_is_a_clear_error() -> None:
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(ValueError, match=r"could not trace the model with a \(1, 3, 224, 224\) probe to find its "
                                         r"layer \(.*\); pass input_size=\(C, H, W\) of your images"):
        _ = captum_topgap.get_method("gradcam", cnn).layer

"""Top-GAP CAM: the class activation map a Top-GAP network computes in its forward pass.

    M_c(x) = up(CAM(x)_c)        CAM(x) = W ∗ P(x) ∈ R^{C × H/r × W/r}

No backward pass: the explanation costs one forward. ``up`` is a bilinear resize to the input size.

Example:
    >>> from captum_topgap.models import topgap
    >>> model = topgap("resnet18", num_classes=3, k=8).eval()
    >>> logits, maps = topgap_cam(model, torch.rand(2, 3, 64, 64), target=None)
    >>> tuple(maps.shape), tuple(logits.shape)
    ((2, 1, 64, 64), (2, 3))
"""

from __future__ import annotations

import torch
from torch import nn

from captum_topgap._checks import TargetType, check_bool
from captum_topgap.attribution import ForwardWithArgs, MethodAttribution, resolve_labels, upsample_to
from captum_topgap.registry import register_method


def class_maps(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) and class maps (N, C, h, w) of a Top-GAP model from one forward without gradients."""
    own = model.model if isinstance(model, ForwardWithArgs) else model
    if not callable(getattr(own, "cam", None)):
        raise TypeError(f"Top-GAP CAM needs a Top-GAP model (with .cam(x) and forward(x, return_cam=True)), got "
                        f"{type(model).__name__}; build one with timm.create_model('topgap_resnet18', ...).")
    with torch.no_grad():
        logits, cam = model(inputs, return_cam=True)
    return logits, cam


def topgap_cam(model: nn.Module, inputs: torch.Tensor, target: TargetType = None,
               upsample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the class maps of ``target`` (``None``: the predicted class) as (N, 1, H, W).

    ``upsample=False`` keeps the CAM's own resolution (H/4 × W/4 for ImageNet-style backbones).
    """
    logits, cam = class_maps(model, inputs)
    labels = resolve_labels(target, len(inputs), lambda: logits, cam.shape[1]).to(cam.device)
    maps = cam[torch.arange(len(inputs), device=cam.device), labels].unsqueeze(1)
    return logits, upsample_to(maps, inputs.shape[-2:]) if upsample else maps


@register_method("topgap_cam", origin="captum-topgap", kind="model",
                 description="Top-GAP class map of a Top-GAP model: one forward, no backward (Nieradzik et al.)")
class TopGAPCAM(MethodAttribution):
    """Top-GAP class maps as a Captum attribution: (N, 1, H, W), raw CAM values, one forward, no backward.

    Args:
        model: a Top-GAP network (``timm.create_model("topgap_resnet18", ...)``).
        upsample: bilinear resize to the input (``False``: the CAM's resolution).

    Example:
        >>> import timm
        >>> model = timm.create_model("topgap_resnet18", num_classes=4, k=16)
        >>> TopGAPCAM(model).attribute(torch.rand(2, 3, 64, 64), target=[1, 3]).shape
        torch.Size([2, 1, 64, 64])
    """

    method_name = "topgap_cam"
    target_from_own_forward = True

    def __init__(self, model: nn.Module, layer: None = None, upsample: bool = True) -> None:
        if layer is not None:
            raise ValueError("`layer` is not used by 'topgap_cam': it reads the model's own class maps; leave it None.")
        super().__init__(model)
        self.upsample = check_bool(upsample, "upsample")

    def class_maps(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and every class's map (N, C, h, w) from one forward (for per-class targets)."""
        return class_maps(self.network, inputs)

    def _attribute(self, inputs: torch.Tensor, labels: TargetType) -> torch.Tensor:
        return topgap_cam(self.network, inputs, labels, self.upsample)[1]

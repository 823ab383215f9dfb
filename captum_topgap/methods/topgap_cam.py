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

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import TargetType, check_target


def class_maps(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) and class maps (N, C, h, w) of a Top-GAP model from one forward without gradients."""
    if not callable(getattr(model, "cam", None)):
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
    labels = logits.argmax(1) if target is None else check_target(target, len(inputs), cam.shape[1]).to(cam.device)
    maps = cam[torch.arange(len(inputs), device=cam.device), labels].unsqueeze(1)
    if upsample:
        maps = F.interpolate(maps, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
    return logits, maps


def select_maps(cam: torch.Tensor, targets: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> torch.Tensor:
    """Apply one pytorch-grad-cam style target per image to its (C, h, w) class maps -> (N, h, w)."""
    if len(targets) != len(cam):
        raise ValueError(f"`targets` has {len(targets)} entries for {len(cam)} images; pass one per image.")
    return torch.stack([target(maps) for target, maps in zip(targets, cam, strict=True)])

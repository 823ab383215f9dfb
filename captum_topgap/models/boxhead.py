"""Classification and localisation (the lecture of seed 003): a classifier with a second, box-regression head on
the pooled features, registered in timm as ``boxhead_resnet18`` / ``boxhead_resnet50``.

    logits = W_c · GAP(f(x)) + b_c                     (the ResNet's own ``fc``)
    box    = σ(W_b · GAP(f(x)) + b_b) ∈ [0, 1]⁴        (x, y, w, h of the object's box, normalised by the image)

trained with the multitask loss α · S + (1 − α) · R, S the cross-entropy and R the squared error of the four
numbers (:class:`captum_topgap.train.objectives.BoxObjective`), the boxes taken from the masks
(:func:`normalised_boxes`). It is the supervised reference of weakly supervised (CAM) boxes. ``forward(x)``
returns the logits, so every method, attack and metric of this package treats it as a classifier.

Example:
    >>> import timm
    >>> net = timm.create_model("boxhead_resnet18", num_classes=3)
    >>> out = net(torch.rand(2, 3, 48, 48), return_boxes=True)
    >>> tuple(out.logits.shape), tuple(out.boxes.shape), bool(((out.boxes >= 0) & (out.boxes <= 1)).all())
    ((2, 3), (2, 4), True)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from captum_topgap.models._timm import no_pretrained


class BoxOutput(NamedTuple):
    """One forward of a box-head network: class ``logits`` (N, K) and ``boxes`` (N, 4), (x, y, w, h) in [0, 1]."""

    logits: torch.Tensor
    boxes: torch.Tensor


class BoxHeadResNet(ResNet):
    """A timm ResNet with a box-regression head beside its classifier (see the module docstring).

    Example:
        >>> from timm.models.resnet import BasicBlock
        >>> net = BoxHeadResNet(block=BasicBlock, layers=(1, 1, 1, 1), num_classes=2).eval()
        >>> net.predict_boxes(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 4])
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.box_head = nn.Linear(self.num_features, 4)

    def predict_boxes(self, x: torch.Tensor) -> torch.Tensor:
        """σ(W_b · GAP(f(x)) + b_b): (N, 4) boxes (x, y, w, h) normalised by the image's width and height."""
        return self(x, return_boxes=True).boxes

    def forward(self, x: torch.Tensor, return_boxes: bool = False) -> torch.Tensor | BoxOutput:  # type: ignore[override]
        """Class logits (N, K), or with ``return_boxes=True`` a :class:`BoxOutput` from the same pooled features."""
        pooled = self.forward_head(self.forward_features(x), pre_logits=True)
        logits = self.fc(pooled)
        return BoxOutput(logits, torch.sigmoid(self.box_head(pooled))) if return_boxes else logits


def normalised_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixel boxes (x0, y0, x1, y1) with inclusive corners → (x, y, w, h) normalised by ``size`` = (H, W):

        x = x0 / W,  y = y0 / H,  w = (x1 − x0 + 1) / W,  h = (y1 − y0 + 1) / H

    Example:
        >>> normalised_boxes(torch.tensor([[2, 1, 5, 1]]), (4, 8)).tolist()
        [[0.25, 0.25, 0.5, 0.25]]
    """
    height, width = size
    scale = boxes.new_tensor([width, height, width, height], dtype=torch.float)
    corners = boxes.float()
    return torch.stack([corners[:, 0], corners[:, 1], corners[:, 2] - corners[:, 0] + 1,
                        corners[:, 3] - corners[:, 1] + 1], dim=1) / scale


def pixel_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(x, y, w, h) in [0, 1] → pixel boxes (x0, y0, x1, y1) with inclusive corners inside an (H, W) image (the
    inverse of :func:`normalised_boxes`, rounded; a box keeps at least one pixel).

    Example:
        >>> pixel_boxes(torch.tensor([[0.25, 0.25, 0.5, 0.25]]), (4, 8)).tolist()
        [[2, 1, 5, 1]]
    """
    height, width = size
    x0 = (boxes[:, 0] * width).round().clamp(0, width - 1)
    y0 = (boxes[:, 1] * height).round().clamp(0, height - 1)
    x1 = torch.maximum(((boxes[:, 0] + boxes[:, 2]) * width).round() - 1, x0).clamp(max=width - 1)
    y1 = torch.maximum(((boxes[:, 1] + boxes[:, 3]) * height).round() - 1, y0).clamp(max=height - 1)
    return torch.stack([x0, y0, x1, y1], dim=1).long()


def _cfg(backbone: str) -> dict[str, Any]:
    """A box-head network's pretrained config (no weights exist: ``url`` is empty)."""
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.875,
            "interpolation": "bilinear", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
            "first_conv": "conv1", "classifier": "fc", "license": "apache-2.0", "architecture": f"boxhead_{backbone}"}


default_cfgs = generate_default_cfgs({"boxhead_resnet18": _cfg("resnet18"), "boxhead_resnet50": _cfg("resnet50")})
"""timm's pretrained configs of the registered names (read by ``register_model``)."""


def _create(variant: str, pretrained: bool, **kwargs: Any) -> BoxHeadResNet:
    no_pretrained(pretrained, variant)
    return build_model_with_cfg(BoxHeadResNet, variant, False, **kwargs)


@register_model
def boxhead_resnet18(pretrained: bool = False, **kwargs: Any) -> BoxHeadResNet:
    """ResNet-18 with a box-regression head (classification and localisation)."""
    return _create("boxhead_resnet18", pretrained, block=BasicBlock, layers=(2, 2, 2, 2), **kwargs)


@register_model
def boxhead_resnet50(pretrained: bool = False, **kwargs: Any) -> BoxHeadResNet:
    """ResNet-50 with a box-regression head."""
    return _create("boxhead_resnet50", pretrained, block=Bottleneck, layers=(3, 4, 6, 3), **kwargs)

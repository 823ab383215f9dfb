"""Attention Branch Network (Fukui et al., "Attention Branch Network: Learning of Attention Mechanism for Visual
Explanation", CVPR 2019) over a timm ResNet, registered in timm as ``abn_resnet18`` / ``abn_resnet50``.

The feature extractor g is the ResNet up to ``layer3``. The attention branch reads g(x) with a stride-1 stage
shaped like ``layer4`` (``att_layer4``), BatchNorm, a 1 × 1 convolution to K class maps, BatchNorm and ReLU;
from those maps

    attention logits = GAP(W₂ ⋆ maps)                       (W₂: K → K, 1 × 1)
    M(x)             = σ(BN(W₃ ⋆ maps)) ∈ [0, 1]^{h × w}      (W₃: K → 1, 3 × 3; h × w = layer3's grid)

and the perception branch classifies g′(x) = (1 + M(x)) · g(x) with ``layer4``, global pooling and ``fc``. The
training loss is CE(attention logits) + CE(perception logits); with region annotations s (Mitsuhara et al.
2019, the ReFF supplementary's "ABN-based regularization") + γ ‖M(x) − s↓‖², s↓ the mask resized to M's
grid (:class:`captum_topgap.train.objectives.ABNObjective`). ``forward(x)`` returns the perception logits,
so every method, attack and metric of this package treats the network as a classifier.

Example:
    >>> import timm
    >>> net = timm.create_model("abn_resnet18", num_classes=3)
    >>> out = net(torch.rand(2, 3, 64, 64), return_attention=True)
    >>> tuple(out.logits.shape), tuple(out.attention_logits.shape), tuple(out.attention.shape)
    ((2, 3), (2, 3), (2, 1, 4, 4))
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple, cast

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import ResNet
from torch import nn

from captum_topgap.models._timm import no_pretrained


class ABNOutput(NamedTuple):
    """One forward of an ABN: perception ``logits``, ``attention_logits`` and the attention map M(x) (N, 1, h, w)."""

    logits: torch.Tensor
    attention_logits: torch.Tensor
    attention: torch.Tensor


def stride_one(stage: nn.Sequential) -> nn.Sequential:
    """A freshly initialised copy of a ResNet stage with its stride-2 convolutions made stride 1 (the attention
    branch's ``att_layer4``: ``layer4``'s blocks at ``layer3``'s resolution, as in the authors' code).

    Example:
        >>> import timm
        >>> copy_ = stride_one(timm.create_model("resnet18").layer4)
        >>> tuple(copy_(torch.rand(1, 256, 4, 4)).shape)
        (1, 512, 4, 4)
    """
    stage = copy.deepcopy(stage)
    for module in stage.modules():
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.reset_running_stats()
    return stage


class ABNResNet(nn.Module):
    """An Attention Branch Network over the timm ResNet ``backbone`` (see the module docstring).

    Args:
        backbone: the timm ResNet name (``"resnet18"``, ``"resnet50"``).
        num_classes: K, the classes of both branches.
        in_chans: the images' channels.

    Example:
        >>> net = ABNResNet("resnet18", num_classes=4)
        >>> net.attention_map(torch.rand(1, 3, 48, 48)).shape
        torch.Size([1, 1, 3, 3])
    """

    conv1: nn.Module
    bn1: nn.Module
    act1: nn.Module
    maxpool: nn.Module
    layer1: nn.Module
    layer2: nn.Module
    layer3: nn.Module
    layer4: nn.Module
    global_pool: nn.Module
    fc: nn.Module

    def __init__(self, backbone: str = "resnet18", num_classes: int = 1000, in_chans: int = 3,
                 **kwargs: Any) -> None:
        super().__init__()
        resnet = cast(ResNet, timm.create_model(backbone, num_classes=num_classes, in_chans=in_chans, **kwargs))
        self.backbone_name, self.num_classes = backbone, num_classes
        for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4", "global_pool", "fc"):
            setattr(self, name, getattr(resnet, name))  # the ResNet's own modules, under its own names
        self.num_features = int(resnet.num_features)
        self.att_layer4 = stride_one(cast(nn.Sequential, resnet.layer4))
        self.bn_att = nn.BatchNorm2d(self.num_features)
        self.act = nn.ReLU(inplace=True)
        self._attention_head(num_classes)

    def _attention_head(self, num_classes: int) -> None:
        """The K-sized part of the attention branch (rebuilt by :meth:`reset_classifier`)."""
        self.att_conv = nn.Conv2d(self.num_features, num_classes, 1, bias=False)
        self.bn_att2 = nn.BatchNorm2d(num_classes)
        self.att_conv2 = nn.Conv2d(num_classes, num_classes, 1, bias=False)
        self.att_conv3 = nn.Conv2d(num_classes, 1, 3, padding=1, bias=False)
        self.bn_att3 = nn.BatchNorm2d(1)

    def get_classifier(self) -> nn.Module:
        """The perception branch's linear classifier (timm's contract)."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New K-way heads on both branches (timm's contract; ``global_pool`` is kept as built)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._attention_head(max(num_classes, 1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """g(x): the feature extractor up to ``layer3``."""
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))

    def attention_branch(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention logits (N, K), M(x) (N, 1, h, w)) from g(x)."""
        maps = self.act(self.bn_att2(self.att_conv(self.bn_att(self.att_layer4(features)))))
        attention = torch.sigmoid(self.bn_att3(self.att_conv3(maps)))
        return self.att_conv2(maps).mean(dim=(2, 3)), attention

    def perception_branch(self, features: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Perception logits of g′(x) = (1 + M(x)) · g(x)."""
        return self.fc(self.global_pool(self.layer4((1 + attention) * features)))

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """M(x) (N, 1, h, w) in [0, 1] at ``layer3``'s resolution."""
        return self.attention_branch(self.forward_features(x))[1]

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> torch.Tensor | ABNOutput:
        """Perception logits (N, K), or with ``return_attention=True`` an :class:`ABNOutput`."""
        features = self.forward_features(x)
        attention_logits, attention = self.attention_branch(features)
        logits = self.perception_branch(features, attention)
        return ABNOutput(logits, attention_logits, attention) if return_attention else logits


def _cfg(backbone: str) -> dict[str, Any]:
    """An ABN's pretrained config (no weights exist: ``url`` is empty)."""
    return {"url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.875,
            "interpolation": "bilinear", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
            "first_conv": "conv1", "classifier": "fc", "license": "apache-2.0", "architecture": f"abn_{backbone}"}


default_cfgs = generate_default_cfgs({"abn_resnet18": _cfg("resnet18"), "abn_resnet50": _cfg("resnet50")})
"""timm's pretrained configs of the registered names (read by ``register_model``)."""


def _create(variant: str, pretrained: bool, backbone: str, **kwargs: Any) -> ABNResNet:
    no_pretrained(pretrained, variant)
    return build_model_with_cfg(ABNResNet, variant, False, backbone=backbone, **kwargs)


@register_model
def abn_resnet18(pretrained: bool = False, **kwargs: Any) -> ABNResNet:
    """Attention Branch Network over ResNet-18 (M(x) at ``layer3``'s stride 16)."""
    return _create("abn_resnet18", pretrained, "resnet18", **kwargs)


@register_model
def abn_resnet50(pretrained: bool = False, **kwargs: Any) -> ABNResNet:
    """Attention Branch Network over ResNet-50 (the ReFF supplementary's backbone of ABN)."""
    return _create("abn_resnet50", pretrained, "resnet50", **kwargs)

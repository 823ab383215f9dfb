"""CIFAR-style Pre-activation ResNet-18 (He et al. 2016) for 32 × 32 inputs: the robustness table's model.

A 3 × 3 stride-1 stem and four stages of two pre-activation basic blocks (64, 128, 256, 512 channels,
strides 1, 2, 2, 2). :class:`PreActResNetFeatures` returns the four stage outputs (timm's
``features_only`` contract, with ``feature_info``); :class:`PreActResNet18` adds BN-ReLU, global average
pooling and a linear classifier (registered in timm as ``preact_resnet18_cifar``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models import register_model
from timm.models._features import FeatureInfo
from torch import nn
from torch.utils.checkpoint import checkpoint

from captum_topgap.models._timm import no_pretrained

CIFAR_CFG = {"input_size": (3, 32, 32), "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616),
             "interpolation": "bilinear", "crop_pct": 1.0}


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3-BN-ReLU-conv3×3 with an identity (or 1×1 projection) shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(in_chs), nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(out_chs), nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(in_chs, out_chs, 1, stride, bias=False)
                         if stride != 1 or in_chs != out_chs else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output: residual branch + shortcut."""
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        return self.conv2(F.relu(self.bn2(out))) + shortcut


class PreActResNetFeatures(nn.Module):
    """The stem and four stages; ``forward`` returns the list of stage outputs (strides 1, 2, 4, 8)."""

    def __init__(self, in_chans: int = 3, widths: tuple[int, ...] = (64, 128, 256, 512)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        stages, in_chs, info = [], widths[0], []
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(PreActBlock(in_chs, width, stride), PreActBlock(width, width, 1)))
            in_chs = width
            info.append({"num_chs": width, "reduction": 2 ** i, "module": f"layers.{i}"})
        self.layers = nn.ModuleList(stages)
        self.feature_info = FeatureInfo(info, out_indices=tuple(range(len(widths))))
        self.grad_checkpointing = False
        self.pretrained_cfg = {**CIFAR_CFG, "first_conv": "conv1"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of storing its activations (timm's contract)."""
        self.grad_checkpointing = enable

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs (timm's ``features_only`` contract)."""
        x = self.conv1(x)
        features = []
        for stage in self.layers:
            if self.grad_checkpointing and self.training and not torch.jit.is_scripting():
                x = checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
            features.append(x)
        return features


class PreActResNet18(nn.Module):
    """CIFAR PreAct ResNet-18 classifier with timm's model contract.

    Example:
        >>> PreActResNet18(num_classes=10)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        self.features = PreActResNetFeatures(in_chans)
        self.num_features = self.features.feature_info.channels()[-1]
        self.bn = nn.BatchNorm2d(self.num_features)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.pretrained_cfg = {**CIFAR_CFG, "first_conv": "features.conv1", "classifier": "fc",
                               "num_classes": num_classes, "architecture": "preact_resnet18_cifar"}
        self.default_cfg = self.pretrained_cfg

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's features after BN-ReLU: (N, 512, H/8, W/8)."""
        return F.relu(self.bn(self.features(x)[-1]))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling and the classifier (``pre_logits``: the pooled features)."""
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The linear classifier (timm's contract)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (``num_classes=0``: none)."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


@register_model
def preact_resnet18_cifar(pretrained: bool = False, **kwargs) -> PreActResNet18:
    """CIFAR-style PreAct ResNet-18 (GAP + FC), the baseline of the Top-GAP robustness table."""
    return PreActResNet18(**no_pretrained(pretrained, "preact_resnet18_cifar", kwargs))

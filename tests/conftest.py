"""Shared tiny models: small enough that every method runs in milliseconds on 2 CPU cores."""

from __future__ import annotations

import pytest
import torch
from timm.models._features import FeatureInfo
from torch import nn

from captum_topgap.models import ABNResNet, TopGAPNet

torch.set_num_threads(2)

#: Cheaper settings for the slow perturbation methods; every other method runs with its defaults.
FAST = {
    "shapley_value_sampling": {"n_samples": 1},
    "lime": {"n_samples": 8},
    "kernel_shap": {"n_samples": 8},
    "integrated_gradients": {"n_steps": 4},
    "augmented_gradcam": {"n_augmentations": 3, "iterations": 4},
    "rise": {"n_masks": 8},
}


class TinyNet(nn.Module):
    """conv-BN-ReLU-Dropout-conv-ReLU-GAP-FC; ``fail = True`` makes forward raise after the features."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.3),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(self.pool(self.features(x)).flatten(1))
        if self.fail:
            raise RuntimeError("forward failed on purpose")
        return logits


class TinyFeatures(nn.Module):
    """Two conv stages (strides 1 and 2) with BN and Dropout, timm ``features_only`` style."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.3))
        self.stage2 = nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU())
        self.feature_info = FeatureInfo([{"num_chs": 6, "reduction": 1, "module": "stage1"},
                                         {"num_chs": 8, "reduction": 2, "module": "stage2"}], (0, 1))
        self.fail = False

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = self.stage1(x)
        second = self.stage2(first)
        if self.fail:
            raise RuntimeError("forward failed on purpose")
        return [first, second]


def tiny_topgap(num_classes: int = 3) -> TopGAPNet:
    torch.manual_seed(0)
    return TopGAPNet(TinyFeatures(), num_classes=num_classes, k=4, fpn_channels=4, min_reduction=1).train()


class FailSwitch(nn.Module):
    """Identity; ``fail = True`` makes it raise (placed after a model's features)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise RuntimeError("forward failed on purpose")
        return x


def tiny_abn(num_classes: int = 3) -> ABNResNet:
    """An Attention Branch Network over ResNet-18 whose perception branch can fail on purpose (after ``layer4``)."""
    torch.manual_seed(0)
    model = ABNResNet("resnet18", num_classes=num_classes)
    model.layer4 = nn.Sequential(model.layer4, FailSwitch())
    return model.train()


def set_fail(model: nn.Module, fail: bool) -> None:
    for module in model.modules():
        if hasattr(module, "fail"):
            module.fail = fail


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet()
    with torch.no_grad():
        net.features[1].running_mean.uniform_(-0.1, 0.1)
        net.features[1].running_var.uniform_(0.5, 1.5)
    return net.train()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))

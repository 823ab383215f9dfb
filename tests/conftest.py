"""Shared tiny models: small enough that every method runs in milliseconds on 2 CPU cores."""

from __future__ import annotations

import pytest
import torch
from torch import nn

torch.set_num_threads(2)


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

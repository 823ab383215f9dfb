"""The expansion network of the High-Resolution CAM framework (Tagaris et al., ICIP 2019), named Expansion CAM here.

A frozen localisation network (any GAP + FC CNN) gives low-resolution feature maps A (K channels) and
its encoder stages s_1 … s_L. The expansion network mirrors that encoder: starting from A it upsamples
stage by stage, concatenating the encoder's feature maps of the same resolution (skip connections), up
to the input size, where a 3 × 3 convolution gives K channels A^high and a 1 × 1 convolution the
reconstructed image x̂. It is trained with ‖x̂ − x‖² while the localisation network stays frozen, and

    high-res CAM_c = Σ_k W_k^c A_k^high        (W: the localisation network's classifier)

Example:
    >>> import timm
    >>> net = ExpansionNet(timm.create_model("resnet18", num_classes=3))
    >>> features, reconstruction = net.expand(torch.rand(2, 3, 32, 32))
    >>> tuple(features.shape), tuple(reconstruction.shape)
    ((2, 512, 32, 32), (2, 3, 32, 32))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import input_channels
from captum_topgap._hooks import capture
from captum_topgap._layers import linear_classifier
from captum_topgap.models._blocks import OverFrozen, conv_bn_relu, freeze


def _stages(localizer: nn.Module, stages: Sequence[str] | None) -> list[str]:
    if stages is not None:
        return list(stages)
    info = getattr(localizer, "feature_info", None)
    if info is None:
        raise ValueError("the localisation network has no timm `feature_info`; pass `stages=` with the names of "
                         "its encoder stages, from the highest resolution to the last feature block")
    return [stage["module"] for stage in info]


class _Up(nn.Module):
    """Upsample to the skip's size, concatenate the skip, 3 × 3 conv-BN-ReLU."""

    def __init__(self, channels: int, skip: int, out: int) -> None:
        super().__init__()
        self.conv = conv_bn_relu(channels + skip, out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.conv(torch.cat([x, skip], dim=1))


class ExpansionNet(OverFrozen):
    """Frozen localisation network + trainable expansion path; ``forward`` returns the classifier's logits.

    Args:
        localizer: a GAP + FC CNN (a timm model, or any model with ``stages=`` given).
        stages: names of the encoder modules whose outputs feed the skip connections, highest resolution
            first; the last one gives the feature maps A of the CAM (default: timm's ``feature_info``).

    The localisation network's parameters have ``requires_grad=False`` and it stays in eval mode even when
    the expansion network trains, so neither its weights nor its BatchNorm statistics move.
    """

    frozen = "localizer"

    def __init__(self, localizer: nn.Module, stages: Sequence[str] | None = None) -> None:
        super().__init__()
        self.localizer = freeze(localizer)
        self.stages = _stages(localizer, stages)
        modules = dict(localizer.named_modules())
        missing = [name for name in self.stages if name not in modules]
        if missing:
            raise ValueError(f"stages {missing} are not modules of the localisation network")
        with torch.no_grad():
            probe = torch.zeros(1, input_channels(localizer) or 3, 64, 64)
            shapes = [f.shape for f in self._encode(probe)[1]]
        self.channels = shapes[-1][1]
        reads = linear_classifier(localizer).in_features
        if reads != self.channels:
            raise ValueError(f"the last stage {self.stages[-1]!r} has {self.channels} channels but the classifier "
                             f"reads {reads}; the last stage must give the CAM's feature maps")
        widths = [s[1] for s in shapes]
        self.up = nn.ModuleList(_Up(widths[i + 1], widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Sequential(nn.Conv2d(widths[0], self.channels, 3, padding=1), nn.ReLU(inplace=True))
        self.reconstruction = nn.Conv2d(self.channels, probe.shape[1], 1)  # x̂ has the input's channels

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        modules = dict(self.localizer.named_modules())
        with capture([modules[name] for name in self.stages]) as seen:
            logits = self.localizer(x)
        return logits, seen.ready()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The localisation network's logits and stage feature maps (the last = A), without gradients."""
        with torch.no_grad():
            return self._encode(x)

    def expand(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(A^high (N, K, H, W), reconstruction x̂ (N, 3, H, W)) of images x."""
        _, skips = self.encode(x)
        y = skips[-1]
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            y = block(y, skip)
        features = self.head(F.interpolate(y, size=x.shape[-2:], mode="nearest"))
        return features, self.reconstruction(features)

    def forward(self, x: torch.Tensor, expand: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The classifier's logits, or with ``expand=True`` :meth:`expand`'s (A^high, x̂)."""
        return self.expand(x) if expand else self.localizer(x)

"""The decoder of Perception Visualization (Giulivi, Carman and Boracchi, BMVC 2021): what the model perceives.

The encoder E is the classifier M truncated at a layer L (default: the layer Grad-CAM explains); the decoder
D is trained to invert it, x̂ = D(E(x)), while M stays frozen — "such that the parameters and predictions
of the original models are not modified" (the paper's abstract). D sees E(x) and nothing else: unlike
Expansion CAM's expansion network (``models/expansion.py``) it has no skip connections from earlier layers,
which would carry detail the representation at L does not hold. The loss (our design; the paper's is not
public) is a pixel term plus a feature-consistency term, so that x̂ is what E reads and not only a blurred
average image:

    L = ‖x̂ − x‖₁ / (C H W) + β · ‖E(x̂) − E(x)‖² / ‖E(x)‖²

D (our design): a 1 × 1 convolution to min(K, 256) channels, then per factor 2 between E(x)'s grid and the
image a nearest-neighbour ×2 upsampling and a 3 × 3 conv-BN-ReLU (channels halved down to 32), a 3 × 3
convolution to the image's channels, a bilinear resize to the exact image size and a sigmoid: x̂ ∈ [0, 1].

Example:
    >>> import timm
    >>> decoder = PerceptionDecoder(timm.create_model("resnet18", num_classes=3), image_size=64)
    >>> decoder.layer_name, tuple(decoder.reconstruct(torch.rand(2, 3, 64, 64)).shape)
    ('layer4', (2, 3, 64, 64))
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import input_channels
from captum_topgap._hooks import capture, forward_hooks
from captum_topgap._layers import default_layer, example_input, resolve_layer
from captum_topgap.models._blocks import OverFrozen, conv_bn_relu, freeze

CONSISTENCY_WEIGHT = 1.0
"""β of the feature-consistency term (our choice: both terms are O(0.1) at the start on 48-px Textured MNIST)."""


class Perceived(NamedTuple):
    """One pass of the pair: the classifier's ``logits``, the ``latent`` E(x) and the ``reconstruction`` D(E(x))."""

    logits: torch.Tensor
    latent: torch.Tensor
    reconstruction: torch.Tensor


class _Truncated(Exception):
    """Raised by the hook at layer L to stop the classifier's forward there, carrying E(x)."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output


def feature_consistency(latent: torch.Tensor, re_encoded: torch.Tensor) -> torch.Tensor:
    """Mean over images of ‖E(x̂) − E(x)‖² / ‖E(x)‖² (0 when the reconstruction encodes exactly as the image).

    Example:
        >>> z = torch.ones(2, 1, 2, 2)
        >>> feature_consistency(z, 1.5 * z).item()  # (0.5² · 4) / 4
        0.25
    """
    if latent.shape != re_encoded.shape:
        raise ValueError(f"E(x) {tuple(latent.shape)} and E(x̂) {tuple(re_encoded.shape)} differ in shape; the "
                         "reconstruction must have the image's size.")
    error = (re_encoded - latent).flatten(1).pow(2).sum(1)
    return (error / latent.flatten(1).pow(2).sum(1).clamp_min(1e-12)).mean()


def _size(image_size: int | tuple[int, int] | None, classifier: nn.Module) -> tuple[int, int]:
    if image_size is None:
        height, width = example_input(classifier).shape[-2:]
        return int(height), int(width)
    if not isinstance(image_size, (int, tuple, list)) or isinstance(image_size, bool):
        raise ValueError(f"`image_size` must be a positive int or (H, W), got {image_size!r}.")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"`image_size` must be a positive int or (H, W), got {image_size!r}.")
    return int(size[0]), int(size[1])


class PerceptionDecoder(OverFrozen):
    """A frozen classifier M and a decoder D trained to invert E = M up to ``layer``; ``forward`` gives M's logits.

    Args:
        classifier: the model explained (frozen here: ``requires_grad=False``, always in eval mode).
        layer: the layer L (module or dotted name; default: the last spatial layer, Grad-CAM's default).
        image_size: the images' (H, W) (an int for square ones; default: the size the model was built for).
            D's depth follows from it, and PV refuses images of another size.

    Example:
        >>> import timm
        >>> decoder = PerceptionDecoder(timm.create_model("resnet18", num_classes=3), "layer3", image_size=48)
        >>> out = decoder(torch.rand(2, 3, 48, 48), reconstruct=True)
        >>> tuple(out.latent.shape), bool((out.reconstruction >= 0).all())
        ((2, 256, 3, 3), True)
    """

    frozen = "classifier"

    def __init__(self, classifier: nn.Module, layer: nn.Module | str | None = None,
                 image_size: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        if not isinstance(classifier, nn.Module):
            raise TypeError(f"`classifier` must be a torch.nn.Module, got {type(classifier).__name__}.")
        self.classifier = freeze(classifier)
        self.image_size = _size(image_size, classifier)
        channels = input_channels(classifier) or 3
        probe = torch.zeros(1, channels, *self.image_size)
        if layer is None:
            self.layer_name, _ = default_layer(classifier, probe)
        else:
            module = resolve_layer(classifier, layer)
            self.layer_name = next(name for name, m in classifier.named_modules() if m is module)
        with torch.no_grad():
            latent = self.encode(probe)
        if latent.dim() != 4:
            raise ValueError(f"`layer` {self.layer_name!r} gives shape {tuple(latent.shape)}, not feature maps "
                             "(N, K, h, w); pick a convolutional layer.")
        self.latent_shape = tuple(latent.shape[1:])
        width = min(latent.shape[1], 256)
        blocks: list[nn.Module] = [nn.Conv2d(latent.shape[1], width, 1, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(inplace=True)]
        ups = max(0, round(math.log2(self.image_size[0] / latent.shape[-2])))
        for _ in range(ups):
            narrower = max(32, width // 2)
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), conv_bn_relu(width, narrower)]
            width = narrower
        self.decoder = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(width, channels, 3, padding=1)

    @property
    def layer(self) -> nn.Module:
        """The module L of the classifier at which E stops."""
        return resolve_layer(self.classifier, self.layer_name)

    def check_size(self, images: torch.Tensor) -> None:
        """A clear error for images of another size than the decoder was built for."""
        if tuple(images.shape[-2:]) != self.image_size:
            h, w = self.image_size
            raise ValueError(f"the perception decoder was built for {h} × {w} images (its `image_size`), got "
                             f"{images.shape[-2]} × {images.shape[-1]}; resize the images to {h} × {w}, or train a "
                             "decoder at that size (captum-topgap train --method perception --size ...).")

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """E(x): the classifier's output at L, its forward stopped there (gradients flow to ``images``)."""
        try:
            with forward_hooks([self.layer], _stop):
                self.classifier(images)
        except _Truncated as stopped:
            return stopped.output
        raise ValueError(f"`layer` {self.layer_name!r} did not run in the classifier's forward.")

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """D(z): the image (N, C, H, W) in [0, 1] that the decoder reads from feature maps z (N, K, h, w)."""
        if tuple(latent.shape[1:]) != self.latent_shape:
            raise ValueError(f"the decoder reads {self.latent_shape} feature maps at {self.layer_name!r}, got "
                             f"{tuple(latent.shape[1:])}; pass E(x) of the layer and image size it was built for.")
        image = self.to_image(self.decoder(latent))
        if tuple(image.shape[-2:]) != self.image_size:
            image = F.interpolate(image, size=self.image_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(image)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """x̂ = D(E(x)) without gradients."""
        self.check_size(images)
        with torch.no_grad():
            return self.decode(self.encode(images))

    def forward(self, images: torch.Tensor, reconstruct: bool = False) -> torch.Tensor | Perceived:
        """M's logits, or with ``reconstruct=True`` a :class:`Perceived` (logits and E(x) without gradients)."""
        if not reconstruct:
            return self.classifier(images)
        self.check_size(images)
        with torch.no_grad(), capture([self.layer]) as seen:
            logits = self.classifier(images)
        latent = seen.ready()[0]
        return Perceived(logits, latent, self.decode(latent))


def _stop(_module: nn.Module, _inputs: object, output: object) -> None:
    raise _Truncated(output)  # type: ignore[arg-type]

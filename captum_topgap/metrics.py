"""Measures that judge explanations. Heat-maps follow the registry's convention: (N, 1, H, W) tensors."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def normalize_per_image(heatmaps: torch.Tensor) -> torch.Tensor:
    """Min-max scale each heat-map to [0, 1] (a constant map becomes zeros).

    Example:
        >>> normalize_per_image(torch.tensor([[[[1.0, 3.0]]], [[[2.0, 2.0]]]])).flatten().tolist()
        [0.0, 1.0, 0.0, 0.0]
    """
    flat = heatmaps.flatten(1).float()
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(heatmaps)


def _check_pair(heatmaps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if heatmaps.dim() == 3:
        heatmaps = heatmaps.unsqueeze(1)
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if heatmaps.dim() != 4 or heatmaps.shape[1] != 1:
        raise ValueError(f"`heatmaps` must be (N, 1, H, W), got {tuple(heatmaps.shape)}; "
                         "sum pixel attributions over channels first.")
    if masks.shape != heatmaps.shape:
        raise ValueError(f"`masks` has shape {tuple(masks.shape)} but `heatmaps` {tuple(heatmaps.shape)}; "
                         "upsample the heat-maps to the mask size (upsample=True) first.")
    return heatmaps, masks.bool()


def mask_iou(heatmaps: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-image IoU of {normalised heat-map ≥ threshold} with the ground-truth mask: (N,).

        IoU = |{h ≥ t} ∩ M| / |{h ≥ t} ∪ M|,   h min-max normalised per image

    Example:
        >>> heat = torch.tensor([[[[0.9, 0.8], [0.1, 0.0]]]])
        >>> mask = torch.tensor([[[[True, False], [False, False]]]])
        >>> mask_iou(heat, mask).tolist()
        [0.5]
    """
    heatmaps, masks = _check_pair(heatmaps, masks)
    hot = normalize_per_image(heatmaps) >= threshold
    inter = (hot & masks).flatten(1).sum(1).float()
    union = (hot | masks).flatten(1).sum(1).float()
    return inter / union.clamp_min(1)


def mean_mask_iou(heatmaps: torch.Tensor, masks: torch.Tensor,
                  thresholds: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) -> torch.Tensor:
    """Per-image IoU averaged over thresholds 0.1 … 0.9 (no single threshold favours a method): (N,).

    Example:
        >>> heat = torch.tensor([[[[1.0, 0.0]]]]); mask = torch.tensor([[[[True, False]]]])
        >>> mean_mask_iou(heat, mask).tolist()
        [1.0]
    """
    return torch.stack([mask_iou(heatmaps, masks, t) for t in thresholds]).mean(0)

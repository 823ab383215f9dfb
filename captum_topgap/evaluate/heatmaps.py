"""Dataset-level evaluation: accuracy and how well each method's heat-maps cover the ground-truth masks.

Protocol (documented once, used by the CLI, the docs and the demo): heat-maps of the *true* class at
input resolution (CAM-type methods upsample bilinearly; pixel methods are summed over |channels|), min-max
normalised per image; IoU with the mask at threshold 0.5 and averaged over thresholds 0.1 … 0.9; and without
a fixed threshold (Choe et al. 2020, :mod:`captum_topgap.evaluate.wsol`), PxAP and MaxBoxAccV2 against the mask
and its tight box, from counts that add over batches and ranks.
Under torch.distributed each rank scores its shard and the sums and counts are added over the ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from captum_topgap._distributed import all_sum, is_main, shard
from captum_topgap.data.transforms import Samples, batches
from captum_topgap.evaluate.metrics import energy_pointing_game, erf_distance, mask_iou, mean_mask_iou
from captum_topgap.evaluate.wsol import THRESHOLDS, box_hits, mask_boxes, max_box_accuracy_of, pixel_counts, pxap_of
from captum_topgap.registry import get_method


def as_heatmap(attributions: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) heat-maps from any method's output: CAMs pass, pixel attributions give Σ_c |a_c|.

    Example:
        >>> as_heatmap(torch.tensor([[[[1.0]], [[-2.0]], [[0.5]]]])).item()
        3.5
    """
    return attributions if attributions.shape[1] == 1 else attributions.abs().sum(1, keepdim=True)


def heatmap_scores(model: nn.Module, methods: Sequence[str], data: Samples, limit: int | None = 200,
                   batch_size: int = 32, method_kwargs: dict[str, dict[str, Any]] | None = None,
                   progress: bool = True) -> dict[str, dict[str, float]]:
    """Mean mask IoU (threshold 0.5), mean IoU over thresholds, energy pointing game, PxAP and MaxBoxAccV2 (with
    the threshold of each IoU level, ``tau@30`` …) of each method.

    Example:
        >>> from captum_topgap.data import TexturedMNIST
        >>> from captum_topgap.models import topgap
        >>> model = topgap("resnet18", num_classes=10, k=16)
        >>> scores = heatmap_scores(model, ["topgap_cam"], TexturedMNIST("test", size=32, limit=4), progress=False)
        >>> [key for key in ("iou", "pxap", "max_box_acc_v2", "tau@50") if key in scores["topgap_cam"]]
        ['iou', 'pxap', 'max_box_acc_v2', 'tau@50']
    """
    indices = shard(range(min(limit or len(data), len(data))))
    loader = batches(data, batch_size, indices)
    sums = {name: {"iou": 0.0, "iou_mean_thresholds": 0.0, "energy_pointing_game": 0.0} for name in methods}
    explainers = {name: get_method(name, model, **(method_kwargs or {}).get(name, {})) for name in methods}
    width = len(THRESHOLDS)
    counts = {name: torch.zeros(6 * width, dtype=torch.double) for name in methods}  # pixel counts, box hits
    count: float = 0
    for batch in tqdm(loader, desc="heat-maps", disable=not progress or not is_main(), leave=False):
        device = next(model.parameters()).device
        images, labels, masks = batch.images.to(device), batch.labels.to(device), batch.masks.to(device)
        for name, explainer in explainers.items():
            heat = as_heatmap(explainer.attribute(images, target=labels)).detach()
            sums[name]["iou"] += float(mask_iou(heat, masks).sum())
            sums[name]["iou_mean_thresholds"] += float(mean_mask_iou(heat, masks).sum())
            sums[name]["energy_pointing_game"] += float(energy_pointing_game(heat, masks).sum())
            counted = (pixel_counts(heat, masks), box_hits(heat, mask_boxes(masks)))
            counts[name] += torch.cat([block.flatten() for block in counted])
        count += len(labels)
    keys = [(name, key) for name in sums for key in sums[name]]
    flat = [value for name in methods for value in counts[name].tolist()]
    *totals, count = all_sum([sums[name][key] for name, key in keys] + flat + [count])
    for (name, key), total in zip(keys, totals[:len(keys)], strict=True):
        sums[name][key] = total
    scores = {name: {k: v / max(count, 1) for k, v in values.items()} for name, values in sums.items()}
    summed = torch.tensor(totals[len(keys):], dtype=torch.double).view(len(methods), 6, width)
    for name, block in zip(methods, summed, strict=True):
        boxes = max_box_accuracy_of(block[3:] / max(count, 1))
        pixel_ap = pxap_of(block[:3]) if block[2, 0] > 0 else float("nan")  # no mask pixel: no precision
        scores[name].update({"pxap": pixel_ap, "max_box_acc_v2": boxes.pop("MaxBoxAccV2"), **boxes})
    return scores


def method_maps(model: nn.Module, method: str, data: Samples, batch_size: int = 32,
                method_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The heat-maps (N, 1, H, W) of the true class by ``method`` over every sample of ``data`` (on the CPU) and
    the masks, for measures that need the maps themselves (a threshold chosen on one split, applied to another).

    Example:
        >>> from captum_topgap.data import TexturedMNIST
        >>> from captum_topgap.models import topgap
        >>> maps, masks = method_maps(topgap("resnet18", num_classes=10, k=16), "topgap_cam",
        ...                           TexturedMNIST("test", size=32, limit=3))
        >>> tuple(maps.shape), masks.dtype
        ((3, 1, 32, 32), torch.bool)
    """
    explainer = get_method(method, model, **(method_kwargs or {}))
    device = next(model.parameters()).device
    maps, masks = [], []
    for batch in batches(data, batch_size):
        images, labels = batch.images.to(device), batch.labels.to(device)
        maps.append(as_heatmap(explainer.attribute(images, target=labels)).detach().cpu())
        masks.append(batch.masks.bool().cpu())
    return torch.cat(maps), torch.cat(masks)


def erf_scores(model: nn.Module, data: Samples, limit: int | None = 200, batch_size: int = 32,
               progress: bool = True) -> dict[str, float]:
    """Mean ERF distance (background share of ERF mass, mass-weighted distance to the mask) of the true
    class over ``limit`` samples; see :func:`captum_topgap.evaluate.metrics.erf_distance`.
    """
    indices = shard(range(min(limit or len(data), len(data))))
    sums = {"background_share": 0.0, "distance": 0.0}
    count: float = 0
    device = next(model.parameters()).device
    for batch in tqdm(batches(data, batch_size, indices), desc="ERF distance",
                      disable=not progress or not is_main(), leave=False):
        scores = erf_distance(model, batch.images.to(device), batch.masks.to(device).bool(), batch.labels.to(device))
        for key in sums:
            sums[key] += float(scores[key].sum())
        count += len(batch.labels)
    *totals, count = all_sum([*sums.values(), count])
    return {key: value / max(count, 1) for key, value in zip(sums, totals, strict=True)}

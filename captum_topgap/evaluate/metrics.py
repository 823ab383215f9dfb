"""Measures: accuracy, and those that judge explanations (heat-maps follow the registry's convention:
(N, 1, H, W) tensors) — mask IoU, pointing games, boxes, ROC, ERF distance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.utils.data import DataLoader

from captum_topgap._checks import all_finite, check_float, check_int
from captum_topgap._distributed import all_sum, shard
from captum_topgap._state import preserved_state
from captum_topgap.data.transforms import Samples, batches
from captum_topgap.methods.erf import erf


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
    for name, value in (("heatmaps", heatmaps), ("masks", masks)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor of shape (N, 1, H, W), got {type(value).__name__}; "
                            "convert it with torch.as_tensor(...).")
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
    if not all_finite(heatmaps):
        raise ValueError("`heatmaps` contains NaN or Inf values; clean them (e.g. torch.nan_to_num) first.")
    return heatmaps, masks.bool()


def _iou(normalised: torch.Tensor, masks: torch.Tensor, threshold: float) -> torch.Tensor:
    hot = normalised >= threshold
    inter = (hot & masks).flatten(1).sum(1).float()
    union = (hot | masks).flatten(1).sum(1).float()
    return inter / union.clamp_min(1)


def mask_iou(heatmaps: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-image IoU of {normalised heat-map ≥ threshold} with the ground-truth mask: (N,).

        IoU = |{h ≥ t} ∩ M| / |{h ≥ t} ∪ M|,   h min-max normalised per image

    Example:
        >>> heat = torch.tensor([[[[0.9, 0.8], [0.1, 0.0]]]])
        >>> mask = torch.tensor([[[[True, False], [False, False]]]])
        >>> mask_iou(heat, mask).tolist()
        [0.5]
    """
    threshold = check_float(threshold, "threshold", minimum=0.0, maximum=1.0)
    heatmaps, masks = _check_pair(heatmaps, masks)
    return _iou(normalize_per_image(heatmaps), masks, threshold)


def soft_mask_iou(probabilities: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-image IoU of a soft mask taken at an absolute ``threshold`` with the ground-truth mask: (N,) — for
    masks that are probabilities already (the pix2pix pseudo-annotator's), so no per-image normalisation.

        IoU = |{p ≥ t} ∩ M| / |{p ≥ t} ∪ M|

    Example:
        >>> soft = torch.tensor([[[[0.9, 0.4], [0.6, 0.1]]]])
        >>> mask = torch.tensor([[[[True, True], [False, False]]]])
        >>> soft_mask_iou(soft, mask).tolist()  # {0.9, 0.6} against {0.9, 0.4}: 1 of 3
        [0.3333333432674408]
    """
    threshold = check_float(threshold, "threshold", minimum=0.0, maximum=1.0)
    probabilities, masks = _check_pair(probabilities, masks)
    return _iou(probabilities, masks, threshold)


def mean_mask_iou(heatmaps: torch.Tensor, masks: torch.Tensor,
                  thresholds: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)) -> torch.Tensor:
    """Per-image IoU averaged over thresholds 0.1 … 0.9 (no single threshold favours a method): (N,).

    Example:
        >>> heat = torch.tensor([[[[1.0, 0.0]]]]); mask = torch.tensor([[[[True, False]]]])
        >>> mean_mask_iou(heat, mask).tolist()
        [1.0]
    """
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Sequence):
        raise TypeError(f"`thresholds` must be a sequence of numbers in [0, 1], got {type(thresholds).__name__}.")
    if len(thresholds) == 0:
        raise ValueError("`thresholds` is empty; pass at least one threshold in [0, 1] (default 0.1, 0.2, …, 0.9).")
    levels = [check_float(t, "thresholds", minimum=0.0, maximum=1.0) for t in thresholds]
    heatmaps, masks = _check_pair(heatmaps, masks)
    normalised = normalize_per_image(heatmaps)
    return torch.stack([_iou(normalised, masks, t) for t in levels]).mean(0)


def class_discrimination(maps_top1: torch.Tensor, maps_top2: torch.Tensor) -> torch.Tensor:
    """How differently a method explains two classes of the same image: one minus the Pearson correlation of its
    map for the image's top-1 class with its map for the top-2 class, per image: (N,).

        D = 1 − r,   r = Σ_p (a_p − ā)(b_p − b̄) / √(Σ_p (a_p − ā)² · Σ_p (b_p − b̄)²)

    over the pixels p of the two maps a, b (any shape (N, …), the same for both), computed as D = ½‖â − b̂‖² with
    â = (a − ā)/‖a − ā‖ (the same number, without the rounding of 1 − r near 0). D lies in [0, 2]: 0 when the two
    maps are the same up to scale and offset (the method shows the same evidence for both classes — Grad-CAM's
    "cat" and "laundry basket"), 1 when they are uncorrelated, 2 when one is the other reversed. Two constant maps
    count as the same (r = 1, D = 0: nothing tells the classes apart); one constant map as uncorrelated (r = 0,
    D = 1), as :func:`captum_topgap.evaluate.compare.spearman` does.

    Example:
        >>> a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
        >>> class_discrimination(a.repeat(3, 1), torch.stack([2 * a[0] + 1, torch.tensor([1.0, -1.0, -1.0, 1.0]),
        ...                                                   -a[0]])).tolist()
        [0.0, 1.0, 2.0]
    """
    for name, value in (("maps_top1", maps_top1), ("maps_top2", maps_top2)):
        if not isinstance(value, torch.Tensor) or value.dim() < 2:
            shown = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"`{name}` must be a tensor of maps (N, …), one per image, got {shown}.")
        if not all_finite(value):
            raise ValueError(f"`{name}` contains NaN or Inf values; clean them (e.g. torch.nan_to_num) first.")
    if maps_top1.shape != maps_top2.shape:
        raise ValueError(f"`maps_top1` {tuple(maps_top1.shape)} and `maps_top2` {tuple(maps_top2.shape)} must have the "
                         "same shape: the same method's maps of the same images for two classes.")
    maps = [x.flatten(1).double() for x in (maps_top1, maps_top2)]
    flat = [x.amax(1) == x.amin(1) for x in maps]  # exactly constant (a mean can round off such a map's value)
    centred = [x - x.mean(1, keepdim=True) for x in maps]
    unit = [c / c.norm(dim=1, keepdim=True).clamp_min(1e-300) for c in centred]
    distance = ((unit[0] - unit[1]).pow(2).sum(1) / 2).clamp(0.0, 2.0)  # = 1 − r, exact 0 for maps equal up to scale
    return torch.where(flat[0] & flat[1], 0.0, torch.where(flat[0] | flat[1], 1.0, distance)).float()


def pointing_game(heatmaps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Per-image hit (1.0) when the heat-map's maximum lies in the mask (dilated by ``tolerance`` px): (N,).

    Example:
        >>> heat = torch.tensor([[[[0.1, 0.9], [0.2, 0.3]]]])
        >>> pointing_game(heat, torch.tensor([[[[False, True], [False, False]]]])).tolist()
        [1.0]
    """
    check_int(tolerance, "tolerance", minimum=0)
    heatmaps, masks = _check_pair(heatmaps, masks)
    if tolerance > 0:
        masks = torch.nn.functional.max_pool2d(masks.float(), 2 * tolerance + 1, 1, tolerance).bool()
    peak = heatmaps.flatten(1).argmax(1)
    return masks.flatten(1).gather(1, peak[:, None])[:, 0].float()


def energy_pointing_game(heatmaps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the heat-map's energy inside the mask (Score-CAM's energy-based pointing game): (N,).

        E = Σ_{p ∈ M} h⁺(p) / Σ_p h⁺(p),   h⁺ = min-max normalised heat-map

    Example:
        >>> heat = torch.tensor([[[[3.0, 1.0], [0.0, 0.0]]]])
        >>> energy_pointing_game(heat, torch.tensor([[[[True, False], [False, False]]]])).tolist()
        [0.75]
    """
    heatmaps, masks = _check_pair(heatmaps, masks)
    heat = normalize_per_image(heatmaps).flatten(1)
    return (heat * masks.flatten(1)).sum(1) / heat.sum(1).clamp_min(1e-12)


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256,
            transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Predicted classes (N,) of ``images``, in batches, without gradients, the model in eval mode (its
    state restored); ``transform`` (e.g. a normalisation) is applied to each batch first.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2, bias=False))
        >>> _ = net[1].weight.data.copy_(torch.eye(2))
        >>> predict(net, torch.tensor([[[[0.0, 1.0]]], [[[2.0, 1.0]]]])).tolist()
        [1, 0]
    """
    check_int(batch_size, "batch_size", minimum=1)
    with preserved_state(model), torch.no_grad():
        return torch.cat([model(transform(chunk) if transform else chunk).argmax(dim=1)
                          for chunk in images.split(batch_size)])


def accuracy(model: nn.Module, data: Samples | DataLoader, batch_size: int = 64,
             device: torch.device | str | None = None) -> float:
    """Top-1 accuracy of ``model`` over ``(image, label, …)`` samples — the one accuracy of this project.

        accuracy = |{i : argmax f(x_i) = y_i}| / N

    The model runs in eval mode (restored afterwards) on ``device`` (default: its own). Under
    torch.distributed a dataset is sharded over the ranks and the counts are summed (every rank gets the
    same, exact result); a DataLoader is taken as this rank's share.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
        >>> _ = torch.nn.init.zeros_(net[1].weight); _ = net[1].bias.data.copy_(torch.tensor([0.0, 1.0]))
        >>> accuracy(net, [(torch.zeros(3, 1, 1), 1, None), (torch.zeros(3, 1, 1), 0, None)])
        0.5
    """
    if not isinstance(data, DataLoader):
        data = batches(data, batch_size, shard(range(len(data))))
    device = device or next(model.parameters()).device
    correct: float = 0
    total: float = 0
    for batch in data:
        labels = batch.labels.to(device)
        correct += int((predict(model, batch.images.to(device), batch_size) == labels).sum())
        total += len(labels)
    correct, total = all_sum([correct, total])
    return correct / max(total, 1)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts (num_classes × num_classes): row = true class, column = predicted class.

    Example:
        >>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2).tolist()
        [[1, 1], [0, 1]]
    """
    check_int(num_classes, "num_classes", minimum=1)
    for name, value in (("predictions", predictions), ("labels", labels)):
        if not isinstance(value, torch.Tensor) or value.is_floating_point() or value.dim() != 1:
            shown = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            dtype = f" {value.dtype}" if isinstance(value, torch.Tensor) else ""
            raise ValueError(f"`{name}` must be a 1-D tensor of class indices, got{dtype} {shown}.")
        if value.numel() and not bool(((value >= 0) & (value < num_classes)).all()):
            bad = sorted(set(value[(value < 0) | (value >= num_classes)].tolist()))
            raise ValueError(f"`{name}` {bad[:5]} out of range for {num_classes} classes; use indices in "
                             f"[0, {num_classes - 1}].")
    if len(predictions) != len(labels):
        raise ValueError(f"`predictions` and `labels` must have the same length, got {len(predictions)} and "
                         f"{len(labels)}.")
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes ** 2).view(num_classes, num_classes)


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """ROC curve (false-positive rates, true-positive rates) and its area for a two-class problem.

    ``scores`` are the positive class's scores, ``labels`` 0/1. Ties are grouped; AUC by the trapezoid rule.

    Example:
        >>> fpr, tpr, auc = roc_auc(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([1, 0, 1, 0]))
        >>> auc
        0.75
    """
    for name, value in (("scores", scores), ("labels", labels)):
        if not isinstance(value, torch.Tensor) or value.dim() != 1:
            shown = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"`{name}` must be a 1-D tensor (one value per sample), got {shown}.")
    if len(scores) != len(labels):
        raise ValueError(f"`scores` and `labels` must have the same length (one per sample), got {len(scores)} "
                         f"and {len(labels)}.")
    if scores.is_floating_point() and bool(torch.isnan(scores).any()):
        raise ValueError("`scores` contains NaN; a NaN has no rank — drop or replace those samples first.")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError(f"`labels` must be 0 or 1 (1 = the positive class), got the values "
                         f"{sorted(set(labels.tolist()))[:5]}.")
    order = torch.argsort(scores, descending=True)
    sorted_scores, sorted_labels = scores[order], labels[order].float()
    distinct = torch.nonzero(torch.diff(sorted_scores) != 0).flatten()
    cut = torch.cat([distinct, torch.tensor([len(scores) - 1])])
    tps = torch.cumsum(sorted_labels, 0)[cut]
    fps = (cut + 1).float() - tps
    positives, negatives = sorted_labels.sum(), len(labels) - sorted_labels.sum()
    if positives == 0 or negatives == 0:
        raise ValueError("`labels` must contain both classes (0 and 1) for a ROC curve.")
    tpr = torch.cat([torch.zeros(1), tps / positives])
    fpr = torch.cat([torch.zeros(1), fps / negatives])
    return fpr, tpr, float(torch.trapezoid(tpr, fpr))


def box_from_heatmap(heatmap: torch.Tensor, rel_threshold: float = 0.2) -> tuple[int, int, int, int]:
    """Weakly supervised localisation: the box (x0, y0, x1, y1), inclusive, of the largest connected
    component of {h ≥ rel_threshold · max h}. 0.2 is CAM's convention, 0.15 Grad-CAM's.

    Example:
        >>> heat = torch.zeros(6, 6); heat[1:3, 1:4] = 1.0; heat[5, 5] = 0.9
        >>> box_from_heatmap(heat)
        (1, 1, 3, 2)
    """
    rel_threshold = check_float(rel_threshold, "rel_threshold", minimum=0.0, maximum=1.0)
    heat = heatmap.detach().float().cpu().squeeze()
    if heat.dim() != 2:
        raise ValueError(f"`heatmap` must be one (H, W) map, got shape {tuple(heatmap.shape)}.")
    labels, count = ndimage.label((heat >= rel_threshold * heat.max()).numpy())
    if count == 0:
        return 0, 0, heat.shape[1] - 1, heat.shape[0] - 1
    sizes = ndimage.sum_labels(labels > 0, labels, range(1, count + 1))
    rows, cols = (labels == 1 + int(sizes.argmax())).nonzero()
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two inclusive pixel boxes (x0, y0, x1, y1), checked (:func:`box_iou_array` for many at once).

    Example:
        >>> box_iou((0, 0, 1, 1), (1, 0, 2, 1))
        0.3333333333333333
    """
    for name, box in (("a", a), ("b", b)):
        _check_box(box, name)
    return float(box_iou_array(np.asarray(a, dtype=float), np.asarray(b, dtype=float)))


def box_iou_array(boxes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """IoU of boxes (…, 4) with targets (…, 4), both (x0, y0, x1, y1) with inclusive pixel corners, broadcast:

        IoU = |A ∩ B| / (|A| + |B| − |A ∩ B|),   |box| = (x1 − x0 + 1)(y1 − y0 + 1)

    Example:
        >>> box_iou_array(np.array([[0, 0, 1, 1], [0, 0, 3, 3]]), np.array([0, 0, 1, 0])).tolist()
        [0.5, 0.125]
    """
    w = np.minimum(boxes[..., 2], targets[..., 2]) - np.maximum(boxes[..., 0], targets[..., 0]) + 1
    h = np.minimum(boxes[..., 3], targets[..., 3]) - np.maximum(boxes[..., 1], targets[..., 1]) + 1
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area = (boxes[..., 2] - boxes[..., 0] + 1) * (boxes[..., 3] - boxes[..., 1] + 1)
    target_area = (targets[..., 2] - targets[..., 0] + 1) * (targets[..., 3] - targets[..., 1] + 1)
    return inter / (area + target_area - inter)


def _check_box(box: object, name: str) -> None:
    try:
        values = list(box)  # type: ignore[call-overload]
        corners = [float(v) for v in values if not isinstance(v, (str, bytes))]
    except (TypeError, ValueError):
        values, corners = [], []
    valid = len(corners) == 4 == len(values) and all(map(math.isfinite, corners))
    if not valid or corners[0] > corners[2] or corners[1] > corners[3]:
        raise ValueError(f"`{name}` must be a box (x0, y0, x1, y1) of finite numbers with x0 ≤ x1 and y0 ≤ y1 "
                         f"(inclusive pixel corners), got {box!r}.")


def erf_distance(model: torch.nn.Module, inputs: torch.Tensor, masks: torch.Tensor,
                 target: torch.Tensor) -> dict[str, torch.Tensor]:
    """ERF distance (our documented definition; the Top-GAP paper's formula is not public), per image.

    With E = ERF of the target logit (Σ_c |∂y/∂x_c|) and d(p) the Euclidean distance of pixel p to the
    object mask (0 inside) divided by the image diagonal:

        background_share = Σ_{p ∉ M} E(p) / Σ_p E(p)
        distance         = Σ_p E(p) · d(p) / Σ_p E(p)

    Lower = less background influence. The model runs in eval mode (restored afterwards).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = net[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]))
        >>> mask = torch.tensor([[[[True, False], [False, False]]]])
        >>> out = erf_distance(net, torch.rand(1, 1, 2, 2), mask, torch.tensor([1]))
        >>> out["background_share"].tolist(), round(out["distance"].item(), 4)
        ([1.0], 0.5)
    """
    with preserved_state(model):
        field = erf(model, inputs, target)
    field, masks = _check_pair(field, masks)
    diagonal = float(torch.tensor(masks.shape[-2:], dtype=torch.float).norm())
    distances = torch.stack([torch.from_numpy(ndimage.distance_transform_edt(~m[0].cpu().numpy())).float()
                             for m in masks]).unsqueeze(1).to(field.device) / diagonal
    mass = field.flatten(1).sum(1).clamp_min(1e-12)
    return {"background_share": (field * ~masks).flatten(1).sum(1) / mass,
            "distance": (field * distances).flatten(1).sum(1) / mass}

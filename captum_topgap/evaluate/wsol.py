"""Weakly supervised localisation measured right (Choe et al., "Evaluating Weakly Supervised Object Localization
Methods Right", CVPR 2020): threshold-free metrics, and a threshold chosen on the validation split.

Every map is min-max normalised per image (:func:`~captum_topgap.evaluate.metrics.normalize_per_image`) and
read at every threshold τ of a grid (:data:`THRESHOLDS`: 0, 0.01, …, 0.99):

    MaxBoxAcc(δ) = max_τ (1/N) Σ_i [ max_{b ∈ boxes(s_i ≥ τ)} IoU(b, B_i) ≥ δ ]
    MaxBoxAccV2  = mean over δ ∈ {0.3, 0.5, 0.7} of MaxBoxAcc(δ)      (V2: the box of every connected region)
    PxAP         = Σ_j (R(τ_j) − R(τ_{j+1})) · P(τ_j)                (pixel precision P and recall R over all
                                                                        pixels of all images, τ ascending)

with B_i the ground-truth box (the tight box of the object's mask) and boxes(·) the bounding boxes of the
8-connected regions of the binarised map (an empty region gives no box, which matches nothing). Top-1
localisation counts an image when its class is right and its best box at τ has IoU ≥ 0.5.
:func:`chosen_threshold` picks τ for mask IoU on a validation split, to be applied unchanged to the test split.

Example:
    >>> maps = torch.zeros(1, 1, 8, 8); maps[..., 2:5, 3:7] = 1.0
    >>> masks = maps.bool()
    >>> max_box_accuracy(maps, mask_boxes(masks))["MaxBoxAccV2"], pxap(maps, masks)
    (1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from captum_topgap.evaluate.metrics import _check_pair, _iou, box_iou_array, mask_iou, normalize_per_image

THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(100))
"""Choe et al.'s grid of CAM thresholds (``cam_curve_interval`` 0.01)."""
DELTAS = (0.3, 0.5, 0.7)
"""The box IoU levels MaxBoxAccV2 averages over."""
_EIGHT = np.ones((3, 3), dtype=bool)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """The tight box (x0, y0, x1, y1), inclusive pixel corners, of each (N, 1, H, W) mask; an empty mask gives
    (−1, −1, −1, −1), which no box matches.

    Example:
        >>> masks = torch.zeros(1, 1, 6, 6, dtype=torch.bool); masks[0, 0, 1:3, 2:5] = True
        >>> mask_boxes(masks).tolist()
        [[2, 1, 4, 2]]
    """
    masks = masks.reshape(len(masks), *masks.shape[-2:]).bool().cpu()
    rows, cols = masks.any(2), masks.any(1)
    boxes = torch.full((len(masks), 4), -1, dtype=torch.long)
    for i, (row, col) in enumerate(zip(rows, cols, strict=True)):
        if row.any():
            ys, xs = row.nonzero().flatten(), col.nonzero().flatten()
            boxes[i] = torch.stack([xs.min(), ys.min(), xs.max(), ys.max()])
    return boxes


def _region_boxes(binary: np.ndarray) -> np.ndarray:
    """(K, 4) boxes of the 8-connected regions of one binary map (K = 0 when it is empty)."""
    labels, count = ndimage.label(binary, structure=_EIGHT)
    slices = ndimage.find_objects(labels)
    return np.array([(s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1) for s in slices if s is not None]
                    ).reshape(count, 4)


def _best_iou(boxes: np.ndarray, target: np.ndarray) -> float:
    """The largest IoU between any of ``boxes`` and ``target`` (inclusive corners); 0 without boxes."""
    if len(boxes) == 0 or target[0] < 0:
        return 0.0
    return float(box_iou_array(boxes, target).max())


def box_ious(heatmaps: torch.Tensor, boxes: torch.Tensor,
             thresholds: Sequence[float] = THRESHOLDS) -> torch.Tensor:
    """(N, T) IoU of each image's best region box with its ground-truth box at each threshold of the
    min-max normalised map (the quantity MaxBoxAccV2 counts).

    Example:
        >>> maps = torch.zeros(1, 1, 4, 4); maps[..., 0, 0] = 1.0
        >>> box_ious(maps, torch.tensor([[0, 0, 1, 0]]), (0.5,)).tolist()
        [[0.5]]
    """
    heatmaps = _check_maps(heatmaps)
    boxes = _check_boxes(boxes, len(heatmaps))
    normalised = normalize_per_image(heatmaps).squeeze(1).cpu().numpy()
    targets = boxes.cpu().numpy()
    out = np.zeros((len(normalised), len(thresholds)))
    for i, (scores, target) in enumerate(zip(normalised, targets, strict=True)):
        for j, tau in enumerate(thresholds):
            out[i, j] = _best_iou(_region_boxes(scores >= tau), target)
    return torch.from_numpy(out)


def box_hits(heatmaps: torch.Tensor, boxes: torch.Tensor, deltas: Sequence[float] = DELTAS,
             thresholds: Sequence[float] = THRESHOLDS) -> torch.Tensor:
    """(D, T) number of images whose best box reaches IoU ≥ δ at each threshold: sums over batches (or
    processes) and divided by the image count give :func:`max_box_accuracy`'s curves.

    Example:
        >>> maps = torch.zeros(2, 1, 6, 6); maps[:, :, 1:4, 1:4] = 1.0
        >>> box_hits(maps, torch.tensor([[1, 1, 3, 3], [1, 1, 5, 5]]), (0.5,), (0.0, 0.5)).tolist()
        [[1.0, 1.0]]
    """
    return _hits(box_ious(heatmaps, boxes, thresholds), deltas)


def _hits(ious: torch.Tensor, deltas: Sequence[float]) -> torch.Tensor:
    """(D, T) images whose best box reaches IoU ≥ δ, from the (N, T) IoUs of :func:`box_ious`."""
    return torch.stack([(ious >= delta).double().sum(0) for delta in deltas])


def max_box_accuracy(heatmaps: torch.Tensor, boxes: torch.Tensor, deltas: Sequence[float] = DELTAS,
                     thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float]:
    """MaxBoxAccV2: for each δ the best share over thresholds of images whose best box reaches IoU ≥ δ
    (``MaxBoxAcc@50`` …, with the threshold that gave it, ``tau@50`` …), and their mean (``MaxBoxAccV2``).

    Example:
        >>> maps = torch.zeros(2, 1, 6, 6); maps[:, :, 1:4, 1:4] = 1.0
        >>> max_box_accuracy(maps, torch.tensor([[1, 1, 3, 3], [1, 1, 5, 5]]))["MaxBoxAcc@50"]
        0.5
    """
    return max_box_accuracy_of(box_hits(heatmaps, boxes, deltas, thresholds) / len(heatmaps), deltas, thresholds)


def max_box_accuracy_of(curves: torch.Tensor, deltas: Sequence[float] = DELTAS,
                        thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float]:
    """:func:`max_box_accuracy` from its (D, T) accuracy curves (:func:`box_hits` / the number of images).

    Example:
        >>> max_box_accuracy_of(torch.tensor([[0.25, 0.5]]), (0.5,), (0.1, 0.2))
        {'MaxBoxAcc@50': 0.5, 'tau@50': 0.2, 'MaxBoxAccV2': 0.5}
    """
    result: dict[str, float] = {}
    for delta, per_threshold in zip(deltas, curves, strict=True):
        best = int(per_threshold.argmax())
        key = f"{round(delta * 100)}"
        result[f"MaxBoxAcc@{key}"], result[f"tau@{key}"] = float(per_threshold[best]), float(thresholds[best])
    result["MaxBoxAccV2"] = float(np.mean([result[f"MaxBoxAcc@{round(d * 100)}"] for d in deltas]))
    return result


def pxap(heatmaps: torch.Tensor, masks: torch.Tensor, thresholds: Sequence[float] = THRESHOLDS) -> float:
    """Pixel average precision of the min-max normalised maps against the masks, pooled over every pixel of
    every image: Σ_j (R(τ_j) − R(τ_{j+1})) · P(τ_j), τ ascending, R(τ_T) = 0 past the last threshold; a
    threshold that keeps no pixel has no precision and adds nothing.

    Example:
        >>> maps = torch.tensor([[[[0.0, 1.0, 0.5, 0.2]]]])
        >>> masks = torch.tensor([[[[False, True, False, True]]]])
        >>> round(pxap(maps, masks, thresholds=(0.0, 0.3, 0.6)), 4)
        0.75
    """
    return pxap_of(pixel_counts(heatmaps, masks, thresholds))


def pixel_counts(heatmaps: torch.Tensor, masks: torch.Tensor,
                 thresholds: Sequence[float] = THRESHOLDS) -> torch.Tensor:
    """(3, T) counts per threshold (ascending) of the min-max normalised maps: pixels kept inside the masks,
    pixels kept, and (every column) the masks' pixels — sums over batches or processes give :func:`pxap_of`'s
    input.

    Example:
        >>> pixel_counts(torch.tensor([[[[0.0, 1.0]]]]), torch.tensor([[[[False, True]]]]), (0.0, 0.5)).tolist()
        [[1.0, 1.0], [2.0, 1.0], [1.0, 1.0]]
    """
    heatmaps, masks = _check_pair(heatmaps, masks)
    scores = normalize_per_image(heatmaps).flatten().cpu().double()
    inside = masks.flatten().cpu()
    taus = torch.tensor(sorted(thresholds), dtype=torch.double)
    kept = scores[None, :] >= taus[:, None]
    return torch.stack([(kept & inside).sum(1).double(), kept.sum(1).double(),
                        inside.sum().double().expand(len(taus))])


def pxap_of(counts: torch.Tensor) -> float:
    """PxAP from :func:`pixel_counts` (summed over any number of batches).

    Example:
        >>> pxap_of(torch.tensor([[2.0, 1.0], [4.0, 1.0], [2.0, 2.0]]))
        0.75
    """
    true_positive, positive, inside = counts
    if not bool(inside[0] > 0):
        raise ValueError("`masks` has no object pixel; PxAP needs at least one pixel inside a mask.")
    recall = true_positive / inside
    precision = torch.where(positive > 0, true_positive / positive.clamp_min(1), torch.zeros_like(positive))
    next_recall = torch.cat([recall[1:], recall.new_zeros(1)])
    return float(((recall - next_recall) * precision).sum())


def chosen_threshold(heatmaps: torch.Tensor, masks: torch.Tensor,
                     thresholds: Sequence[float] = THRESHOLDS) -> tuple[float, float]:
    """The threshold with the best mean mask IoU on a **validation** split, and that IoU: apply it unchanged
    to the test split (``metrics.mask_iou(test_maps, test_masks, threshold=τ)``) — choosing it on the test
    split would report the best case, not a method's.

    Example:
        >>> maps = torch.tensor([[[[0.0, 0.4, 0.8, 1.0]]]])
        >>> chosen_threshold(maps, torch.tensor([[[[False, False, True, True]]]]), (0.3, 0.5, 0.9))
        (0.5, 1.0)
    """
    heatmaps, masks = _check_pair(heatmaps, masks)
    normalised = normalize_per_image(heatmaps)
    means = [float(_iou(normalised, masks, tau).mean()) for tau in thresholds]
    best = int(np.argmax(means))
    return float(thresholds[best]), means[best]


def top1_localisation(heatmaps: torch.Tensor, boxes: torch.Tensor, predictions: torch.Tensor,
                      labels: torch.Tensor, threshold: float, delta: float = 0.5) -> float:
    """Top-1 localisation: the share of images classified right whose best box at ``threshold`` has IoU ≥
    ``delta`` with the ground truth (Choe et al.: the threshold chosen on the validation split).

    Example:
        >>> maps = torch.zeros(2, 1, 4, 4); maps[:, :, :2, :2] = 1.0
        >>> boxes, predictions, labels = torch.tensor([[0, 0, 1, 1]] * 2), torch.tensor([3, 1]), torch.tensor([3, 2])
        >>> top1_localisation(maps, boxes, predictions, labels, threshold=0.5)
        0.5
    """
    ious = box_ious(heatmaps, boxes, (threshold,))[:, 0]
    right = predictions.detach().cpu() == labels.detach().cpu()
    if right.shape != ious.shape:
        raise ValueError(f"`predictions` and `labels` must have one entry per map ({len(ious)}), got "
                         f"{tuple(predictions.shape)} and {tuple(labels.shape)}.")
    return float((right & (ious >= delta)).double().mean())


def box_accuracy(predicted: torch.Tensor, boxes: torch.Tensor, deltas: Sequence[float] = DELTAS) -> dict[str, float]:
    """BoxAcc of one predicted box per image (a box regressor's, no threshold to choose): for each δ the share of
    images whose box has IoU ≥ δ with the ground truth (``BoxAcc@50`` …) and their mean (``BoxAccV2``) — the
    quantity MaxBoxAccV2 maximises over a map's thresholds, so the two stand side by side.

    Example:
        >>> box_accuracy(torch.tensor([[0, 0, 1, 1], [0, 0, 3, 3]]), torch.tensor([[0, 0, 1, 0]] * 2))
        {'BoxAcc@30': 0.5, 'BoxAcc@50': 0.5, 'BoxAcc@70': 0.0, 'BoxAccV2': 0.3333333333333333}
    """
    predicted = _check_boxes(predicted, len(boxes))
    targets = _check_boxes(boxes, len(boxes)).cpu().numpy()
    ious = np.where(targets[:, 0] >= 0, box_iou_array(predicted.cpu().numpy(), targets), 0.0)
    result = {f"BoxAcc@{round(delta * 100)}": float((ious >= delta).mean()) for delta in deltas}
    result["BoxAccV2"] = float(np.mean(list(result.values())))
    return result


def wsol_scores(maps: torch.Tensor, masks: torch.Tensor, val_maps: torch.Tensor, val_masks: torch.Tensor,
                predictions: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> dict[str, float]:
    """One method's localisation on a test split, read every way this module knows: mask ``iou`` at 0.5 of the
    maximum (the fixed threshold), ``pxap`` and ``max_box_acc_v2`` (no threshold), ``iou_val`` at the threshold
    ``tau_val`` chosen on the validation maps (:func:`chosen_threshold`), ``box_acc_val``: the share of test
    images whose best box reaches IoU ≥ 0.5 at the threshold ``tau_box_val`` that does best on the validation
    maps, and with ``predictions`` and ``labels`` the ``top1_loc`` at that threshold.

    Example:
        >>> maps = torch.zeros(2, 1, 6, 6); maps[:, :, 1:4, 1:4] = 1.0
        >>> scores = wsol_scores(maps, maps.bool(), maps, maps.bool())
        >>> scores["iou"], scores["pxap"], scores["max_box_acc_v2"], scores["iou_val"], scores["box_acc_val"]
        (1.0, 1.0, 1.0, 1.0, 1.0)
    """
    boxes, ious = mask_boxes(masks), box_ious(maps, mask_boxes(masks))
    tau, _ = chosen_threshold(val_maps, val_masks)
    chosen = int((box_ious(val_maps, mask_boxes(val_masks)) >= 0.5).double().mean(0).argmax())
    tau_box = THRESHOLDS[chosen]
    scores = {"iou": float(mask_iou(maps, masks).mean()), "pxap": pxap(maps, masks),
              "max_box_acc_v2": max_box_accuracy_of(_hits(ious, DELTAS) / len(maps))["MaxBoxAccV2"],
              "tau_val": tau, "iou_val": float(mask_iou(maps, masks, tau).mean()),
              "tau_box_val": tau_box, "box_acc_val": float((ious[:, chosen] >= 0.5).double().mean())}
    if predictions is not None and labels is not None:
        scores["top1_loc"] = top1_localisation(maps, boxes, predictions, labels, tau_box)
    return scores


def _check_maps(heatmaps: torch.Tensor) -> torch.Tensor:
    if not isinstance(heatmaps, torch.Tensor):
        raise TypeError(f"`heatmaps` must be a torch.Tensor of shape (N, 1, H, W), got {type(heatmaps).__name__}.")
    return _check_pair(heatmaps, torch.zeros(heatmaps.shape, dtype=torch.bool))[0]


def _check_boxes(boxes: torch.Tensor, count: int) -> torch.Tensor:
    boxes = torch.as_tensor(boxes)
    if boxes.shape != (count, 4):
        raise ValueError(f"`boxes` must be ({count}, 4): one (x0, y0, x1, y1) box per map, inclusive pixel corners "
                         f"(captum_topgap.evaluate.wsol.mask_boxes(masks) gives them), got {tuple(boxes.shape)}.")
    return boxes

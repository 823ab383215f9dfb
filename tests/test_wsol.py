"""The threshold-free localisation metrics of Choe et al. (CVPR 2020) on maps whose answer is known, and against a
direct implementation of the definitions (scikit-image's regions, a loop over thresholds) on random maps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import measure

from captum_topgap.evaluate.metrics import mask_iou
from captum_topgap.evaluate.wsol import (
    THRESHOLDS,
    box_ious,
    chosen_threshold,
    mask_boxes,
    max_box_accuracy,
    pxap,
    top1_localisation,
    wsol_scores,
)


def blob(rows: slice, cols: slice, size: int = 12, value: float = 1.0) -> torch.Tensor:
    out = torch.zeros(1, 1, size, size)
    out[..., rows, cols] = value
    return out


def test_a_map_equal_to_its_mask_scores_one_everywhere() -> None:
    maps = blob(slice(2, 6), slice(3, 9))
    masks = maps.bool()
    assert mask_boxes(masks).tolist() == [[3, 2, 8, 5]]
    assert max_box_accuracy(maps, mask_boxes(masks)) == {
        "MaxBoxAcc@30": 1.0, "tau@30": 0.01, "MaxBoxAcc@50": 1.0, "tau@50": 0.01, "MaxBoxAcc@70": 1.0, "tau@70": 0.01,
        "MaxBoxAccV2": 1.0}
    assert pxap(maps, masks) == 1.0 and chosen_threshold(maps, masks) == (0.01, 1.0)


def test_one_box_half_the_object_scores_its_iou() -> None:
    """The map covers 3 of the 6 columns of the object's box: IoU 0.5 at every positive threshold."""
    maps, masks = blob(slice(2, 6), slice(3, 6)), blob(slice(2, 6), slice(3, 9)).bool()
    ious = box_ious(maps, mask_boxes(masks))
    assert ious[0, 0] == pytest.approx(24 / 144) and torch.allclose(ious[0, 1:], torch.tensor(0.5, dtype=torch.double))
    scores = max_box_accuracy(maps, mask_boxes(masks))
    assert (scores["MaxBoxAcc@30"], scores["MaxBoxAcc@50"], scores["MaxBoxAcc@70"]) == (1.0, 1.0, 0.0)
    assert scores["MaxBoxAccV2"] == pytest.approx(2 / 3)
    assert pxap(maps, masks) == pytest.approx(0.5 * 1.0 + 0.5 * 24 / 144)  # recall 1/2 at precision 1, then all


def test_every_region_counts_not_only_the_largest() -> None:
    """Two blobs; the object is the smaller one. V2 boxes every region, so it is found at IoU 1."""
    maps = blob(slice(0, 6), slice(0, 6)) + blob(slice(8, 10), slice(8, 11), value=0.5)
    boxes = mask_boxes(blob(slice(8, 10), slice(8, 11)).bool())
    assert max_box_accuracy(maps, boxes)["MaxBoxAcc@70"] == 1.0
    assert box_ious(maps, boxes, (0.6,)).item() == 0.0  # above the small blob's level only the large one is left


def test_an_all_zero_map_finds_the_whole_image_at_tau_zero_and_nothing_above() -> None:
    maps, masks = torch.zeros(1, 1, 12, 12), blob(slice(0, 12), slice(0, 6)).bool()  # box 6 × 12 of 12 × 12
    ious = box_ious(maps, mask_boxes(masks))
    assert ious[0, 0] == pytest.approx(0.5) and ious[0, 1:].abs().sum() == 0
    assert max_box_accuracy(maps, mask_boxes(masks))["MaxBoxAccV2"] == pytest.approx(2 / 3)  # 30 and 50, not 70
    assert pxap(maps, masks) == pytest.approx(0.5)  # precision = the mask's area, once, at τ = 0


def direct_box_iou(scores: np.ndarray, box: list[int], tau: float) -> float:
    regions = measure.regionprops(measure.label(scores >= tau, connectivity=2))
    best = 0.0
    for region in regions:
        y0, x0, y1, x1 = region.bbox  # exclusive ends
        ix = max(0, min(x1 - 1, box[2]) - max(x0, box[0]) + 1)
        iy = max(0, min(y1 - 1, box[3]) - max(y0, box[1]) + 1)
        union = (x1 - x0) * (y1 - y0) + (box[2] - box[0] + 1) * (box[3] - box[1] + 1) - ix * iy
        best = max(best, ix * iy / union)
    return best


def test_the_metrics_agree_with_a_direct_implementation_on_random_maps() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = torch.nn.functional.avg_pool2d(torch.rand(5, 1, 20, 20, generator=generator), 5, 1, 2)
    masks = torch.zeros(5, 1, 20, 20, dtype=torch.bool)
    for i in range(5):
        masks[i, 0, 2 + i:9 + 2 * i, 3:12 + i] = True
    boxes, taus = mask_boxes(masks), (0.0, 0.2, 0.45, 0.7, 0.9)
    lo = maps.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = maps.flatten(1).max(1).values.view(-1, 1, 1, 1)
    normalised = ((maps - lo) / (hi - lo)).squeeze(1).numpy()
    expected = [[direct_box_iou(normalised[i], boxes[i].tolist(), tau) for tau in taus] for i in range(5)]
    assert box_ious(maps, boxes, taus).numpy() == pytest.approx(np.array(expected))
    total_inside = int(masks.sum())
    precision, recall = [], []
    for tau in sorted(THRESHOLDS):
        hot = torch.from_numpy(normalised >= tau).unsqueeze(1)
        tp = int((hot & masks).sum())
        precision.append(tp / int(hot.sum()) if hot.sum() else 0.0)
        recall.append(tp / total_inside)
    direct = sum((recall[j] - (recall[j + 1] if j + 1 < len(recall) else 0.0)) * precision[j]
                 for j in range(len(recall)))
    assert pxap(maps, masks) == pytest.approx(direct)
    tau, best = chosen_threshold(maps, masks)
    assert best == pytest.approx(float(mask_iou(maps, masks, threshold=tau).mean()))
    assert all(float(mask_iou(maps, masks, threshold=t).mean()) <= best + 1e-9 for t in THRESHOLDS)


def test_top1_localisation_needs_the_right_class_and_the_box() -> None:
    maps = torch.cat([blob(slice(2, 6), slice(3, 9))] * 3)
    boxes = torch.tensor([[3, 2, 8, 5], [3, 2, 8, 5], [0, 0, 1, 1]])
    assert top1_localisation(maps, boxes, torch.tensor([1, 0, 2]), torch.tensor([1, 2, 2]), 0.5) == pytest.approx(1 / 3)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match=r"`boxes` must be \(2, 4\)"):
        max_box_accuracy(torch.rand(2, 1, 4, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="no object pixel"):
        pxap(torch.rand(1, 1, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"`heatmaps` must be a torch\.Tensor"):
        box_ious(np.zeros((1, 1, 4, 4)), torch.zeros(1, 4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one entry per map"):
        top1_localisation(torch.rand(2, 1, 4, 4), torch.zeros(2, 4), torch.zeros(3), torch.zeros(3), 0.5)


def test_the_threshold_is_chosen_on_the_validation_maps_and_applied_unchanged_to_the_test_maps() -> None:
    mask = blob(slice(4, 8), slice(4, 8)).bool()
    val = blob(slice(2, 10), slice(2, 10), value=0.6)
    val[mask] = 1.0  # the object at 1, a ring at 0.6: the best validation threshold lies above 0.6
    test = blob(slice(2, 10), slice(2, 10), value=0.8)
    test[mask] = 1.0  # the same ring at 0.8: the validation threshold keeps it
    scores = wsol_scores(test, mask, val, mask)
    assert scores["tau_val"] == 0.61 and scores["iou_val"] == pytest.approx(16 / 64)
    assert scores["iou"] == pytest.approx(16 / 64) and scores["tau_box_val"] == 0.61
    assert scores["box_acc_val"] == 0.0  # the 8 × 8 ring's box: IoU 0.25 with the 4 × 4 object
    assert wsol_scores(val, mask, val, mask)["iou_val"] == 1.0
    assert wsol_scores(val, mask, val, mask, torch.tensor([1]), torch.tensor([1]))["top1_loc"] == 1.0
    assert wsol_scores(val, mask, val, mask, torch.tensor([0]), torch.tensor([1]))["top1_loc"] == 0.0

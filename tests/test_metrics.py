"""Metrics on hand-made inputs: IoU, pointing games, boxes, ROC, confusion, ERF distance."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from captum_topgap.evaluate.metrics import (
    box_from_heatmap,
    box_iou,
    confusion_matrix,
    energy_pointing_game,
    erf_distance,
    mask_iou,
    mean_mask_iou,
    pointing_game,
    roc_auc,
)


def test_mask_iou_normalises_each_image_and_thresholds() -> None:
    heat = torch.tensor([[[[10.0, 8.0], [2.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    mask = torch.tensor([[[[True, True], [False, False]]], [[[True, False], [False, False]]]])
    assert mask_iou(heat, mask).tolist() == [1.0, 0.0]  # a constant map is all zeros after normalisation
    assert mask_iou(heat, mask, threshold=0.1).tolist() == [pytest.approx(2 / 3), 0.0]
    # normalised: 1, 0.8, 0.2, 0 -> IoU 2/3 at t ≤ 0.2, 1 for 0.3 … 0.8, 1/2 at 0.9
    assert mean_mask_iou(heat[:1], mask[:1]).item() == pytest.approx((2 * 2 / 3 + 6 + 0.5) / 9)


def test_mask_size_mismatch_is_explained() -> None:
    with pytest.raises(ValueError, match=r"`masks` has shape .* upsample the heat-maps"):
        mask_iou(torch.rand(1, 1, 4, 4), torch.ones(1, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"`heatmaps` must be \(N, 1, H, W\)"):
        mask_iou(torch.rand(1, 3, 4, 4), torch.ones(1, 3, 4, 4, dtype=torch.bool))


def test_pointing_games() -> None:
    heat = torch.zeros(2, 1, 5, 5)
    heat[0, 0, 2, 2], heat[1, 0, 0, 4] = 1.0, 1.0
    mask = torch.zeros(2, 1, 5, 5, dtype=torch.bool)
    mask[:, :, 1:4, 1:4] = True
    assert pointing_game(heat, mask).tolist() == [1.0, 0.0]
    assert pointing_game(heat, mask, tolerance=1).tolist() == [1.0, 1.0]
    heat[1, 0, 2, 2] = 1.0  # half the energy inside
    assert energy_pointing_game(heat, mask).tolist() == [1.0, 0.5]


def test_box_from_heatmap_takes_the_largest_component_at_the_relative_threshold() -> None:
    heat = torch.zeros(10, 10)
    heat[2:5, 1:7] = 1.0   # 18 pixels
    heat[7:10, 7:10] = 0.5  # 9 pixels, above 0.2 · max
    heat[0, 9] = 0.1        # below the threshold
    assert box_from_heatmap(heat) == (1, 2, 6, 4)
    assert box_from_heatmap(heat[None, None], rel_threshold=0.6) == (1, 2, 6, 4)
    heat[6:10, 4:10] = 0.3  # now the bottom blob is the largest (24 pixels)
    assert box_from_heatmap(heat, rel_threshold=0.2) == (4, 6, 9, 9)
    assert box_from_heatmap(heat, rel_threshold=0.5) == (1, 2, 6, 4)


def test_box_iou() -> None:
    assert box_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert box_iou((0, 0, 4, 9), (5, 0, 9, 9)) == 0.0
    assert box_iou((0, 0, 9, 9), (0, 0, 4, 9)) == 0.5


def test_roc_auc_with_ties_and_perfect_scores() -> None:
    assert roc_auc(torch.tensor([0.9, 0.7, 0.2]), torch.tensor([1, 1, 0]))[2] == 1.0
    fpr, tpr, auc = roc_auc(torch.tensor([0.5, 0.5, 0.5, 0.5]), torch.tensor([1, 0, 1, 0]))
    assert auc == 0.5 and fpr.tolist() == [0.0, 1.0] and tpr.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))


def test_confusion_matrix_rows_are_true_classes() -> None:
    matrix = confusion_matrix(torch.tensor([2, 2, 0, 1]), torch.tensor([2, 1, 0, 1]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


class PixelModel(nn.Module):
    """Logit 0 = the pixel (r, c) of channel 0: its ERF is that single pixel."""

    def __init__(self, r: int, c: int) -> None:
        super().__init__()
        self.r, self.c = r, c
        self.bn = nn.BatchNorm2d(1).train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = x[:, 0, self.r, self.c]
        return torch.stack([value, -value], 1)


def test_erf_distance_known_answers() -> None:
    mask = torch.zeros(1, 1, 9, 12, dtype=torch.bool)
    mask[..., 0:3, 0:3] = True
    inside = erf_distance(PixelModel(1, 1), torch.rand(1, 1, 9, 12), mask, torch.tensor([0]))
    assert inside["background_share"].item() == 0.0 and inside["distance"].item() == 0.0
    model = PixelModel(8, 11)
    far = erf_distance(model, torch.rand(1, 1, 9, 12), mask, torch.tensor([0]))
    assert far["background_share"].item() == 1.0
    assert far["distance"].item() == pytest.approx(math.hypot(8 - 2, 11 - 2) / math.hypot(9, 12))
    assert model.bn.training  # model state restored


def test_erf_scores_average_erf_distance_over_the_dataset() -> None:
    from captum_topgap.data import TexturedMNIST, collate
    from captum_topgap.evaluate.heatmaps import erf_scores

    from .conftest import TinyNet

    tiny_net = TinyNet(classes=10)
    data = TexturedMNIST("test", size=8, limit=5)
    scores = erf_scores(tiny_net, data, limit=5, batch_size=2, progress=False)
    batch = collate([data[i] for i in range(5)])
    direct = erf_distance(tiny_net, batch.images, batch.masks.bool(), batch.labels)
    assert scores["background_share"] == pytest.approx(float(direct["background_share"].mean()), rel=1e-5)
    assert scores["distance"] == pytest.approx(float(direct["distance"].mean()), rel=1e-5)

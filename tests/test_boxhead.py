"""Classification and localisation: the box-head network, its boxes, its loss and the box accuracy it is read by."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from captum_topgap.app.cli import main
from captum_topgap.data import collate
from captum_topgap.evaluate.metrics import box_iou_array
from captum_topgap.evaluate.wsol import box_accuracy, mask_boxes
from captum_topgap.models import BoxHeadResNet
from captum_topgap.models.boxhead import normalised_boxes, pixel_boxes
from captum_topgap.train.checkpoints import load_checkpoint, load_model
from captum_topgap.train.objectives import BoxObjective, box_loss, make_objective
from captum_topgap.train.workflows import training_method


def test_pixel_and_normalised_boxes_are_inverse_on_every_box_of_a_small_image() -> None:
    corners = torch.tensor([(x0, y0, x1, y1) for x0 in range(6) for x1 in range(x0, 6)
                            for y0 in range(4) for y1 in range(y0, 4)])
    assert torch.equal(pixel_boxes(normalised_boxes(corners, (4, 6)), (4, 6)), corners)
    assert normalised_boxes(torch.tensor([[0, 0, 5, 3]]), (4, 6)).tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_a_box_past_the_image_is_clipped_and_keeps_one_pixel() -> None:
    assert pixel_boxes(torch.tensor([[0.9, 0.9, 0.5, 0.0]]), (10, 10)).tolist() == [[9, 9, 9, 9]]


def test_box_loss_is_the_squared_error_of_the_normalised_box_and_skips_empty_masks() -> None:
    masks = torch.zeros(2, 1, 4, 4)
    masks[0, 0, 1:3, 0:2] = 1  # box (0, 0.25, 0.5, 0.5); the second mask is empty
    predicted = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.3, 0.3, 0.3, 0.3]])
    assert box_loss(predicted, masks).item() == pytest.approx(0.25 ** 2)
    assert box_loss(predicted[:1], masks[:1]).item() == pytest.approx(0.0625)


def test_the_objective_weighs_cross_entropy_and_box_loss_by_alpha() -> None:
    torch.manual_seed(0)
    model = timm.create_model("boxhead_resnet18", num_classes=3)
    mask = torch.zeros(1, 32, 32)
    mask[:, 4:20, 8:16] = 1
    batch = collate([(torch.rand(3, 32, 32), 1, mask), (torch.rand(3, 32, 32), 2, mask)])
    model.eval()  # the same BatchNorm statistics for every call
    out = model(batch.images, return_boxes=True)
    ce, box = F.cross_entropy(out.logits, batch.labels), box_loss(out.boxes, batch.masks)
    for alpha in (0.0, 0.25, 1.0):
        loss, logits = BoxObjective(alpha)(model, batch)
        assert loss.item() == pytest.approx((alpha * ce + (1 - alpha) * box).item(), rel=1e-5)
        assert torch.equal(logits, out.logits)


def test_the_network_is_a_timm_resnet_whose_forward_is_the_classifier() -> None:
    model = timm.create_model("boxhead_resnet18", num_classes=4, output_stride=8).eval()
    images = torch.rand(3, 3, 48, 48)
    out = model(images, return_boxes=True)
    assert isinstance(model, BoxHeadResNet) and model.get_classifier() is model.fc
    assert torch.equal(model(images), out.logits) and torch.equal(model.predict_boxes(images), out.boxes)
    assert ((out.boxes > 0) & (out.boxes < 1)).all()
    assert tuple(model.forward_features(images).shape[-2:]) == (6, 6)


def test_box_accuracy_and_box_iou_array_exact() -> None:
    assert box_iou_array(torch.tensor([[0, 0, 1, 1]]).numpy(), torch.tensor([[1, 1, 2, 2]]).numpy()).tolist() == [1 / 7]
    truth = torch.tensor([[0, 0, 3, 3], [0, 0, 3, 3], [0, 0, 3, 3], [-1, -1, -1, -1]])
    predicted = torch.tensor([[0, 0, 3, 3], [0, 0, 3, 1], [0, 0, 1, 1], [0, 0, 3, 3]])  # IoU 1, 0.5, 0.25; no object
    assert box_accuracy(predicted, truth) == {"BoxAcc@30": 0.5, "BoxAcc@50": 0.5, "BoxAcc@70": 0.25,
                                              "BoxAccV2": pytest.approx(5 / 12)}
    with pytest.raises(ValueError, match=r"`boxes` must be \(4, 4\)"):
        box_accuracy(predicted[:2], truth)


def test_boxhead_and_its_objective_go_together() -> None:
    model = timm.create_model("boxhead_resnet18", num_classes=2)
    assert training_method("auto", model) == "boxhead"
    with pytest.raises(ValueError, match="pair --method boxhead with --model boxhead_resnet18"):
        training_method("boxhead", timm.create_model("resnet18", num_classes=2))
    with pytest.raises(ValueError, match="'boxhead' regresses the masks' boxes"):
        make_objective("boxhead", model, variant="l1")
    with pytest.raises(TypeError, match="needs a box-head network"):
        BoxObjective()(timm.create_model("resnet18", num_classes=2),
                       collate([(torch.rand(3, 8, 8), 0, torch.ones(1, 8, 8))] * 2))
    with pytest.raises(ValueError, match="alpha"):
        BoxObjective(alpha=1.5)


@pytest.mark.slow
def test_cli_trains_a_box_regressor_whose_checkpoint_rebuilds_it(tmp_path: Path) -> None:
    out = tmp_path / "box"
    assert main(["train", "--model", "boxhead_resnet18", "--size", "32", "--limit", "32", "--epochs", "1",
                 "--batch-size", "16", "--p", "1", "--alpha", "0.25", "--out", str(out)]) == 0
    meta = load_checkpoint(out / "best.pt")["metadata"]
    assert (meta["method"], meta["weight"]) == ("boxhead", 0.25)
    model = load_model(out / "best.pt")
    assert isinstance(model, BoxHeadResNet)
    masks = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    masks[..., 3:9, 2:30] = True
    assert mask_boxes(masks).tolist() == [[2, 3, 29, 8]]
    json.dumps(meta)  # the metadata stays plain JSON


def test_cli_refuses_a_bad_alpha_and_a_boxhead_method_without_a_box_head_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["train", "--model", "boxhead_resnet18", "--alpha", "1.5", "--out", str(tmp_path / "a")]) == 2
    error = capsys.readouterr().err.strip()
    assert "argument --alpha: must be a number ≥ 0 and ≤ 1, got '1.5'" in error and "\n" not in error
    assert main(["train", "--model", "resnet18", "--method", "boxhead", "--size", "32", "--limit", "8",
                 "--epochs", "1", "--out", str(tmp_path / "b")]) == 2
    error = capsys.readouterr().err.strip()
    assert "pair --method boxhead with --model boxhead_resnet18" in error and "\n" not in error
    assert not (tmp_path / "b").exists()  # nothing half-written

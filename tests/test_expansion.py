"""Expansion CAM: refinement steps with known answers, the frozen localiser, the high-res CAM formula, adapters."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from captum_topgap.adapters import captum as captum_adapters
from captum_topgap.adapters import grad_cam as grad_cam_adapters
from captum_topgap.app.cli import main
from captum_topgap.data import TexturedMNIST
from captum_topgap.methods.expansion_cam import (
    PIPELINE,
    blend,
    expansion_cams,
    fill_small_holes,
    focal_points,
    growth_bounds,
    pipeline_maps,
    refine,
    region_growing,
    region_of_interest,
    roi_edges,
    scaled_options,
)
from captum_topgap.models import ExpansionNet
from captum_topgap.train.checkpoints import load_model
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.objectives import ExpansionObjective

from .conftest import TinyNet


def test_region_growing_keeps_only_the_region_connected_to_the_seeds() -> None:
    image = np.full((12, 12), 10.0)
    image[2:6, 2:6] = np.linspace(1, 2, 16).reshape(4, 4)  # the region: values in [1, 2], connected
    image[8:11, 8:11] = 1.5  # same values, not connected to the seed
    grown = region_growing(image, np.array([[3, 3]]), 1.0, 2.0)
    expected = np.zeros((12, 12), bool)
    expected[2:6, 2:6] = True
    assert np.array_equal(grown, expected)
    assert not region_growing(image, np.array([[0, 0]]), 1.0, 2.0).any()  # a seed outside the bounds grows nothing


def test_small_holes_are_filled_below_the_area_threshold_only() -> None:
    mask = np.ones((20, 20), bool)
    mask[2:4, 2:4] = False  # a 4-pixel hole
    mask[8:14, 8:14] = False  # a 36-pixel hole
    mask[0, 10:15] = False  # touches the border: not a hole
    filled = fill_small_holes(mask, area=10)
    assert filled[2:4, 2:4].all() and not filled[8:14, 8:14].any() and not filled[0, 10:15].any()
    assert fill_small_holes(mask, area=37)[8:14, 8:14].all()
    assert not fill_small_holes(mask, area=4)[2:4, 2:4].any()  # strictly smaller than the area


def test_blend_roi_bounds_and_focal_points() -> None:
    assert np.allclose(blend(np.array([1.0, 0.0, 1.0]), np.array([0.0, 4.0, 2.0]), weight=0.5), [0.5, 0.5, 0.75])
    low = np.arange(100.0).reshape(10, 10)
    assert region_of_interest(low).sum() == 15  # above the 85th percentile
    assert growth_bounds(np.arange(101.0), np.ones(101, bool)) == (25.0, 75.0)
    seeds = focal_points(low)
    assert len(seeds) == round(np.sqrt(10)) == 3 and seeds.tolist() == [[9, 9], [9, 8], [9, 7]]


def test_refinement_of_a_blob_keeps_the_blob_on_top() -> None:
    yy, xx = np.mgrid[:32, :32]
    blob = np.exp(-((yy - 12) ** 2 + (xx - 20) ** 2) / 30.0)
    steps = refine(blob, blob)  # the centre (flat, low gradient) is a hole inside the ROI edges: filled
    assert steps["roi"][12, 20] and steps["filled"][12, 20]
    assert steps["refined"].argmax() == np.ravel_multi_index((12, 20), (32, 32))
    assert np.allclose(steps["refined"], 0.5 * steps["filled"] + 0.5 * steps["low"])


def test_the_edges_added_are_the_rois_strong_gradient_as_in_the_authors_code() -> None:
    gradient = np.array([[0.0, 2.0, 9.0, 9.0], [1.0, 5.0, 4.0, 9.0]])
    roi = np.array([[True, True, True, False], [True, True, True, True]])
    assert roi_edges(gradient, roi, 5.0).astype(int).tolist() == [[0, 0, 1, 0], [0, 1, 0, 1]]
    yy, xx = np.mgrid[:32, :32]
    blob = np.exp(-((yy - 12) ** 2 + (xx - 20) ** 2) / 30.0)
    steps = refine(blob, blob)
    upper = steps["bounds"][1]
    assert np.array_equal(steps["edged"], steps["grown"] | (steps["roi"] & (steps["gradient"] >= upper)))


def test_pixel_constants_scale_with_the_image_and_stay_the_authors_at_224() -> None:
    assert scaled_options(224) == {"blur_size": 5, "hole_area": 256}
    assert scaled_options(448) == {"blur_size": 9, "hole_area": 1024}  # 10: 9 and 11 tie, round half to even
    assert scaled_options(96) == {"blur_size": 3, "hole_area": 47}
    assert scaled_options(48) == {"blur_size": 1, "hole_area": 12}
    with pytest.raises(ValueError, match="size"):
        scaled_options(0)


def test_the_pipeline_maps_are_refines_steps_for_every_image() -> None:
    net = tiny_expansion().eval()
    x, target = torch.rand(2, 3, 64, 64), torch.tensor([1, 2])
    maps = pipeline_maps(net, x, target, hole_area=16)
    assert list(maps) == list(PIPELINE)
    for i in range(2):
        steps = refine(maps["low"][i, 0].double().numpy(), maps["high"][i, 0].double().numpy(), hole_area=16)
        for name in PIPELINE[2:]:
            assert np.allclose(maps[name][i, 0].numpy(), steps[name].astype(float), atol=1e-6), name
    assert torch.equal(expansion_cams(net, x, target, hole_area=16)["refined"], maps["refined"])


def tiny_expansion() -> ExpansionNet:
    torch.manual_seed(0)
    return ExpansionNet(timm.create_model("resnet18", num_classes=3), stages=None)


def test_high_res_cam_is_the_classifier_weights_times_the_expanded_maps() -> None:
    net = tiny_expansion().eval()
    x, target = torch.rand(2, 3, 32, 32), torch.tensor([2, 0])
    maps = expansion_cams(net, x, target, hole_area=16)
    features = net.expand(x)[0]
    weights = net.localizer.fc.weight[target]
    assert torch.allclose(maps["high"][:, 0], (weights[:, :, None, None] * features).sum(1), atol=1e-5)
    low = net.encode(x)[1][-1]
    assert torch.allclose(maps["low"], torch.nn.functional.interpolate(
        (weights[:, :, None, None] * low).sum(1, keepdim=True), size=(32, 32), mode="bilinear"), atol=1e-5)


def test_training_moves_the_expansion_path_only_and_keeps_the_accuracy() -> None:
    net = tiny_expansion()
    data = TexturedMNIST("train", p=1, size=32, limit=32)
    localizer = {k: v.clone() for k, v in net.localizer.state_dict().items()}
    decoder = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("localizer.")}
    with torch.no_grad():
        before = net.eval()(torch.stack([data[i][0] for i in range(32)])).argmax(1)
    history = train(net, ExpansionObjective(), data, data, TrainConfig(epochs=2, batch_size=16, optimizer="adam",
                                                                      lr=1e-3, progress=False))
    assert all(torch.equal(v, net.localizer.state_dict()[k]) for k, v in localizer.items())  # BN stats included
    assert any(not torch.equal(v, net.state_dict()[k]) for k, v in decoder.items())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    with torch.no_grad():
        after = net.eval()(torch.stack([data[i][0] for i in range(32)])).argmax(1)
    assert torch.equal(before, after)
    assert history[0]["val_accuracy"] == history[1]["val_accuracy"] == (before == torch.tensor(
        [data[i][1] for i in range(32)])).float().mean().item()


def test_captum_and_grad_cam_classes_share_the_core() -> None:
    net = tiny_expansion().eval()
    x = torch.rand(1, 3, 32, 32)
    captum_map = captum_adapters.ExpansionCAM(net.localizer, net, hole_area=16).attribute(x, target=1)[0, 0]
    with grad_cam_adapters.ExpansionCAM(net.localizer, expansion=net, hole_area=16) as cam:
        grad_cam_map = cam(input_tensor=x, targets=[ClassifierOutputTarget(1)])[0]
    expected = (captum_map - captum_map.min()) / (captum_map.max() - captum_map.min())
    assert np.allclose(grad_cam_map, expected.numpy(), atol=1e-5)
    outputs = captum_adapters.ExpansionCAM(net, output="low").attribute_all(x, target=1)
    assert torch.equal(captum_adapters.ExpansionCAM(net, output="low").attribute(x, target=1), outputs["low"])


def test_expansion_errors_name_the_fix() -> None:
    localizer = timm.create_model("resnet18", num_classes=3)
    with pytest.raises(ValueError, match="needs `expansion=`"):
        captum_adapters.ExpansionCAM(localizer)
    with pytest.raises(ValueError, match="needs `expansion=`"):  # an expansion network over another model
        captum_adapters.ExpansionCAM(localizer, tiny_expansion())
    with pytest.raises(ValueError, match="`output` must be one of"):
        captum_adapters.ExpansionCAM(tiny_expansion(), output="sharp")
    with pytest.raises(ValueError, match=r"`output` must be one of \['high', 'low', 'refined'\], got 'bogus'"):
        captum_adapters.ExpansionCAM(tiny_expansion()).attribute(torch.rand(1, 3, 32, 32), target=0, output="bogus")
    with pytest.raises(ValueError, match="no timm `feature_info`; pass `stages=`"):
        ExpansionNet(TinyNet())
    with pytest.raises(ValueError, match="has 6 channels but the classifier reads 8"):
        ExpansionNet(TinyNet(), stages=["features.0", "features.2"])
    with pytest.raises(ValueError, match=r"stages \['nope'\] are not modules"):
        ExpansionNet(TinyNet(), stages=["nope"])


def test_a_one_position_low_resolution_cam_warns_that_every_map_is_constant() -> None:
    """At 16 px a ResNet-18's last stage is 1 × 1: the low CAM, and with it the refined map, carry no location."""
    net = tiny_expansion().eval()
    with pytest.warns(UserWarning, match=r"last stage is 1 × 1 for \(16, 16\) inputs: the low-resolution CAM is"):
        maps = captum_adapters.ExpansionCAM(net, hole_area=4).attribute_all(torch.rand(1, 3, 16, 16), target=0)
    assert float(maps["low"].std()) < 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        captum_adapters.ExpansionCAM(net, hole_area=16).attribute(torch.rand(1, 3, 64, 64), target=0)


@pytest.mark.slow
def test_cli_trains_an_expansion_network_over_a_checkpoint(tmp_path: Path) -> None:
    common = ["--size", "32", "--limit", "32", "--epochs", "1", "--batch-size", "16", "--p", "1"]
    assert main(["train", "--model", "resnet18", *common, "--out", str(tmp_path / "cls")]) == 0
    assert main(["train", "--method", "expansion", "--localizer", str(tmp_path / "cls" / "best.pt"), *common,
                 "--optimizer", "adam", "--lr", "0.001", "--out", str(tmp_path / "exp")]) == 0
    net = load_model(tmp_path / "exp" / "best.pt")
    classifier = load_model(tmp_path / "cls" / "best.pt")
    assert isinstance(net, ExpansionNet)
    assert all(torch.equal(v, net.localizer.state_dict()[k]) for k, v in classifier.state_dict().items())
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "exp" / "best.pt"), "--size", "32", "--limit", "8",
                 "--methods", "expansion_cam", "--json", str(report)]) == 0
    assert 0 <= json.loads(report.read_text())["heatmaps"]["expansion_cam"]["iou"] <= 1

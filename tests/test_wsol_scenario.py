"""The wsol scenario (localisation measured right) end to end on a tiny budget: every model read every way the
WSOL metrics know, the box regressors beside the maps, Expansion CAM's pipeline step by step, and claims that
follow from the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from captum_topgap.app.demo import DemoConfig, evaluate_claims, run_demo
from captum_topgap.app.localisation import step_scores
from captum_topgap.app.scenarios import POSTER_K, Budget, scenario
from captum_topgap.methods.expansion_cam import PIPELINE
from captum_topgap.train.checkpoints import load_checkpoint

TINY = DemoConfig(seeds=(3,), scenarios=("wsol",), budgets={
    "wsol": Budget(32, 1, 16, 16, explain_images=4, size=32, expansion_images=16, expansion_epochs=1)})


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("wsol")
    return out, run_demo(out, config=TINY, progress=False)


@pytest.mark.slow
def test_every_model_is_read_by_every_localisation_metric_it_has(run) -> None:
    out, report = run
    rows = {row["name"]: row for row in report["models"]}
    specs = {model.name: model for model in scenario("wsol").models}
    assert set(rows) == set(specs)
    for name in ("baseline", "baseline_os8", *(f"topgap_{tag}" for tag in POSTER_K)):
        measures = rows[name]["measures"]
        for method in specs[name].methods:
            for key in ("iou", "pxap", "max_box_acc_v2", "iou_val", "tau_val", "box_acc_val", "top1_loc"):
                assert f"{key}/{method}" in measures, (name, key, method)
            assert 0.0 <= measures[f"top1_loc/{method}"] <= measures[f"box_acc_val/{method}"]  # class right too
    for name in ("boxhead", "boxhead_fewshot"):
        measures = rows[name]["measures"]
        assert measures["box_acc_v2"] == pytest.approx(
            (measures["box_acc@30"] + measures["box_acc@50"] + measures["box_acc@70"]) / 3)
        assert measures["top1_loc/box"] <= measures["box_acc@50"]
        assert not any(key.startswith(("pxap/", "expansion")) for key in measures)
    assert rows["topgap_k02"]["measures"]["cam_positions"] == 64.0  # the 8 × 8 CAM at 32 px
    assert load_checkpoint(out / rows["baseline_os8"]["checkpoint"])["metadata"]["model_kwargs"]["output_stride"] == 8


@pytest.mark.slow
def test_the_few_shot_regressor_trains_on_the_validation_split_for_as_many_steps(run) -> None:
    _, report = run
    rows = {row["name"]: row for row in report["models"]}
    assert len(rows["boxhead"]["history"]) == 1
    assert len(rows["boxhead_fewshot"]["history"]) == 2  # ⌈1 epoch × 32 training / 16 validation images⌉


@pytest.mark.slow
def test_expansion_cam_is_scored_step_by_step_over_the_two_plain_localisers_only(run) -> None:
    _, report = run
    rows = {row["name"]: row["measures"] for row in report["models"]}
    baseline = rows["baseline"]
    for prefix in ("expansion", "expansion_scaled"):
        for step in PIPELINE:
            assert {f"{prefix}/{step}/{key}" for key in ("iou", "pxap", "max_box_acc_v2")} <= set(baseline)
    assert baseline["expansion/low/pxap"] == baseline["expansion_scaled/low/pxap"] == baseline["pxap/expansion_low"]
    assert baseline["expansion_accuracy"] == baseline["accuracy"]  # the classifier is frozen
    assert 0 < baseline["expansion_mse"] < 1
    assert "expansion/refined/pxap" in rows["baseline_os8"]  # over the 6 × 6 localiser too
    for name in ("topgap_k02", "boxhead", "boxhead_fewshot"):
        assert not any(key.startswith("expansion") for key in rows[name])


@pytest.mark.slow
def test_the_claims_follow_from_the_numbers_and_the_report_shows_the_grid(run) -> None:
    out, report = run
    assert [claim["claim"] for claim in report["claims"]] == [c.text for c in scenario("wsol").claims]
    saved = json.loads((out / "results.json").read_text())
    recomputed = json.loads(json.dumps(evaluate_claims(saved["models"])))
    assert [{k: v for k, v in c.items() if k != "mechanism"} for c in saved["claims"]] == recomputed
    for claim in saved["claims"]:  # a claim that did not hold names what was measured about it
        assert bool(claim["mechanism"]) is not claim["held"]
    assert (out / "wsol_heatmaps.png").is_file()
    page = (out / "index.html").read_text()
    assert "Expansion CAM step by step" in page and "scaled to the image" in page
    assert saved["scenarios"]["wsol"]["size"] == 32


def test_step_scores_of_a_map_and_of_its_complement() -> None:
    maps = torch.zeros(1, 1, 8, 8)
    maps[..., 2:5, 3:7] = 1.0
    assert step_scores(maps, maps.bool()) == {"iou": 1.0, "pxap": 1.0, "max_box_acc_v2": 1.0}
    flipped = step_scores(1 - maps, maps.bool())
    assert flipped["iou"] == 0.0 and flipped["pxap"] == pytest.approx(12 / 64)  # τ = 0 keeps every pixel

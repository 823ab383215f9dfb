"""Scenarios are data: every spec is consistent, the runner names none of them, a new spec runs without a
line of runner code, ``--list-scenarios`` tells what each is, budgets are stated in reference steps.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import captum_topgap.app.demo as demo_module
import captum_topgap.app.scenarios as scenarios_module
from captum_topgap.app.bench import REFERENCE, reference_step
from captum_topgap.app.cli import main
from captum_topgap.app.demo import MEASURES, MODEL_MEASURES, SEED_MEASURES, DemoConfig, run_demo
from captum_topgap.app.scenarios import PRESETS, SCENARIOS, Budget, ModelSpec, Scenario, TexturedData, scenario
from captum_topgap.evaluate.claims import Claim
from captum_topgap.train.checkpoints import load_checkpoint
from captum_topgap.train.objectives import METHODS
from tests.test_published_datasets import cub, waterbirds  # noqa: F401 (the fixtures)


@pytest.mark.parametrize("spec", SCENARIOS, ids=lambda s: s.name)
def test_every_scenario_is_a_consistent_spec(spec: Scenario) -> None:
    assert set(spec.measures) <= MEASURES and spec.measures
    assert set(spec.budgets) == set(PRESETS)
    names = [model.name for model in spec.models]
    assert len(set(names)) == len(names)
    assert all(model.method in METHODS for model in spec.models)
    for claim in spec.claims:
        assert claim.scenario == spec.name and claim.model in names
        assert claim.reference is None or claim.reference in names
    keys = {key for columns in (spec.columns, *spec.tables.values()) for key, _ in columns}
    assert {claim.measure for claim in spec.claims} <= keys
    assert {claim.reference_measure for claim in spec.claims if claim.reference_measure} <= keys
    if any(model.perception for model in spec.models):  # a decoder is trained only where the measure runs
        assert "perception" in spec.measures
    assert spec.budgets["quick"].seeds == (0,) and len(spec.budgets["default"].seeds) == 3


def test_scenario_names_are_unique_and_unknown_ones_are_refused() -> None:
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)
    with pytest.raises(ValueError, match=r"unknown scenario 'nope'; known: object, robustness, spurious, "
                                         r"topgap-cub, topgap-waterbirds, few-annotations, wsol "
                                         r"\(captum-topgap demo --list-scenarios\)"):
        scenario("nope")
    with pytest.raises(ValueError, match=r"unknown scenario 'nope'"):
        DemoConfig(scenarios=("nope",))
    with pytest.raises(ValueError, match=r"`preset` must be one of"):
        DemoConfig(preset="fast")


def test_the_runner_names_no_scenario() -> None:
    """No string in the runner's code (its docstrings' examples aside) is a scenario's name."""
    tree = ast.parse(inspect.getsource(demo_module))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
               and isinstance(node.value, str) and id(node) not in docstrings}
    assert "localisation" in strings  # the check sees the code's strings
    assert not strings & {spec.name for spec in SCENARIOS}
    assert set(MODEL_MEASURES).isdisjoint(SEED_MEASURES)


def test_the_quick_preset_keeps_a_claim_of_each_paper_the_demo_tests() -> None:
    papers = {"Top-GAP": 0, "ReFF": 0, "Augmented Grad-CAM": 0}
    for spec in SCENARIOS:
        if spec.default:
            for claim in spec.claims:
                for paper in papers:
                    papers[paper] += paper in claim.text or paper in claim.paper
    assert all(papers.values()), papers


def test_a_budget_override_and_seeds_replace_the_presets() -> None:
    spurious = scenario("spurious")
    config = DemoConfig(preset="quick", seeds=(7, 8)).with_budget("spurious", epochs=9)
    budget = config.budget(spurious)
    assert (budget.images, budget.epochs, budget.seeds) == (1000, 9, (7, 8))
    assert config.budget(scenario("object")).seeds == (7, 8) and config.budget(scenario("object")).epochs == 4
    assert config.image_size(scenario("robustness")) == 32
    assert replace(config, backbone="pretrained").image_size(spurious) == 192
    assert replace(config, backbone="pretrained").image_size(scenario("robustness")) == 32


def test_the_reference_step_is_the_median_of_its_repeats() -> None:
    ticks = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])  # steps of 1, 3 and 2 seconds
    assert reference_step(repeats=3, clock=lambda: next(ticks)) == 2.0
    assert REFERENCE == {"size": 48, "batch": 32, "repeats": 5}


def test_list_scenarios_prints_each_scenario_its_paper_models_claims_and_cost(capsys) -> None:
    assert main(["demo", "--list-scenarios"]) == 0
    printed = capsys.readouterr().out
    for spec in SCENARIOS:
        assert re.search(rf"^{spec.name} \((default|run alone with --scenarios)\): {re.escape(spec.paper)}", printed,
                         re.M)
        assert f"models: {', '.join(m.name for m in spec.models)}; {len(spec.claims)} claims" in printed
    assert printed.count("    cost: quick ") == len(SCENARIOS)


TOY = Scenario(
    "toy", "a paper", "its table", "A scenario the runner has never seen.", TexturedData((1.0, 0.0), (1.0, 0.0)), 32,
    (ModelSpec("plain", "ResNet-18", "resnet18", methods=("gradcam",)),
     ModelSpec("sparse", "Top-GAP ResNet-18", "topgap_resnet18", "topgap", k=4, methods=("topgap_cam",))),
    ("localisation",),
    (Claim("sparse keeps plain's accuracy", "toy", "accuracy", "sparse", "plain", "not_worse", 1.0, "—"),),
    {"quick": Budget(16, 1, 8, 8, explain_images=2, attack_images=2, seeds=(0,)),
     "default": Budget(16, 1, 8, 8, explain_images=2, attack_images=2, seeds=(0, 1))},
    (("accuracy", "accuracy"), ("iou/gradcam", "IoU Grad-CAM")), default=False)


@pytest.mark.slow
def test_a_new_scenario_runs_through_the_runner_without_a_line_of_its_code(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(scenarios_module, "SCENARIOS", (*SCENARIOS, TOY))
    monkeypatch.setattr(demo_module, "SCENARIOS", (*SCENARIOS, TOY))
    report = run_demo(tmp_path, config=DemoConfig(preset="quick", scenarios=("toy",)), progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [c["claim"] for c in saved["claims"]] == ["sparse keeps plain's accuracy"] and saved["claims"][0]["held"]
    assert {(m["name"], m["seed"]) for m in saved["models"]} == {("plain", 0), ("sparse", 0)}
    assert {"iou/gradcam", "accuracy", "erf_background_share"} <= set(saved["models"][0]["measures"])
    assert "topk_on_object" in saved["models"][1]["measures"]
    assert saved["scenarios"]["toy"]["budget"]["images"] == 16 and saved["scenarios"]["toy"]["size"] == 32
    assert report["scenarios"]["toy"]["reference_steps"] > 0
    assert (tmp_path / "toy_heatmaps.png").is_file() and "Scenario “toy”" in (tmp_path / "index.html").read_text()


@pytest.mark.slow
def test_a_scenario_reads_its_dataset_from_disk(cub: Path, tmp_path: Path) -> None:  # noqa: F811
    """``topgap-cub`` on a CUB-200-2011 tree in its published layout (the fixture's 12 images), at 32 px."""
    config = DemoConfig(scenarios=("topgap-cub",), root=str(cub), budgets={
        "topgap-cub": Budget(9, 1, 1, 2, explain_images=2, attack_images=2, seeds=(0,), size=32)})
    report = run_demo(tmp_path / "out", config=config, progress=False)
    assert [c["claim"] for c in report["claims"]] == [c.text for c in scenario("topgap-cub").claims]
    rows = {row["name"]: row for row in report["models"]}
    assert {"iou/gradcam", "iou/recipro_cam"} <= set(rows["baseline"]["measures"])
    assert {"iou/topgap_cam", "topk_on_object"} <= set(rows["topgap"]["measures"])
    for row in rows.values():
        meta = load_checkpoint(tmp_path / "out" / row["checkpoint"])["metadata"]
        assert meta["data"] == "cub" and meta["pretrained"] is True and meta["model_kwargs"]["num_classes"] == 200
    assert report["scenarios"]["topgap-cub"]["data"] == "cub from --root"
    with pytest.raises(ValueError, match=r"scenario 'topgap-cub' reads cub from disk: pass --root PATH"):
        run_demo(tmp_path / "none", config=replace(config, root=None), progress=False)
    assert not (tmp_path / "none").exists()  # refused before the reference step and the output folder


@pytest.mark.slow
def test_a_scenario_tests_on_another_datasets_split_by_group(waterbirds: Path, tmp_path: Path) -> None:  # noqa: F811
    """``topgap-waterbirds`` on the fake CUB and Waterbirds trees: trained on CUB, tested on Waterbirds' 3 test
    birds by species with their (bird, place) groups, CUB's test split kept as the in-distribution one.
    """
    config = DemoConfig(scenarios=("topgap-waterbirds",), root=str(waterbirds), budgets={
        "topgap-waterbirds": Budget(9, 1, 1, 3, seeds=(0,), size=32)})
    report = run_demo(tmp_path / "out", config=config, progress=False)
    assert [c["claim"] for c in report["claims"]] == [c.text for c in scenario("topgap-waterbirds").claims]
    for row in report["models"]:
        measures = row["measures"]
        assert {"group_accuracy/0", "group_accuracy/1", "group_accuracy/3"} == {
            k for k in measures if k.startswith("group_accuracy/")}  # the test birds' groups: 0, 1 and 3
        assert measures["worst_group_accuracy"] == min(measures[f"group_accuracy/{g}"] for g in (0, 1, 3))
        assert "in_distribution_accuracy" in measures and "topk_on_object" not in measures  # no masks: no top-k
    assert report["scenarios"]["topgap-waterbirds"]["data"] == "cub from --root, tested on waterbirds"


def test_the_presets_measured_costs_fit_their_budgets() -> None:
    """The quick preset ≤ 10 min and the default ≤ 90 min where the reference step takes 0.15 s."""
    budget = {"quick": 10 * 60 / 0.15, "default": 90 * 60 / 0.15}
    for preset, steps in budget.items():
        total = sum(spec.cost[preset] for spec in SCENARIOS if spec.default)
        assert 0 < total <= steps, (preset, total, steps)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for a machine without CUDA")
def test_demo_device_cuda_without_a_gpu_is_one_line_in_the_command_lines_words(capsys) -> None:
    assert main(["demo", "--device", "cuda", "--list-scenarios"]) == 2
    error = capsys.readouterr().err.strip()
    assert "no CUDA device torch can use; pass --device cpu" in error and "\n" not in error

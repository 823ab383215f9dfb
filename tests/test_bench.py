"""`captum-topgap bench`: the row format, the interleaving, the error for an unknown row."""

from __future__ import annotations

import json

import pytest

from captum_topgap.app.bench import BENCHMARKS, RESOLUTIONS, SECOND_ARCHITECTURES, interleaved, run
from captum_topgap.app.cli import main


def test_interleaving_alternates_a_and_b_after_one_warm_up() -> None:
    calls: list[str] = []
    clock = iter(range(1000))
    interleaved(lambda: calls.append("a"), lambda: calls.append("b"), repeats=2, clock=lambda: next(clock))
    assert calls == ["a", "b", "a", "b", "a", "b"]


def test_quick_row_has_the_promised_fields(capsys) -> None:
    assert main(["bench", "--quick", "--json", "--repeats", "1", "--only", "topgap_cam_vs_forward"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert list(rows) == ["topgap_cam_vs_forward"]
    row = rows["topgap_cam_vs_forward"]
    assert row["target"] == 1.1 and row["a_s"] > 0 and row["b_s"] > 0
    assert row["ratio"] == pytest.approx(row["a_s"] / row["b_s"])  # one repeat: the median is that pair


def test_unknown_row_is_named() -> None:
    with pytest.raises(ValueError, match=r"`--only` must be one of \[.*'topgap_cam_vs_forward'"):
        run(only="nope")
    assert "topgap_train_step_vs_baseline" in BENCHMARKS


@pytest.mark.slow
def test_the_audit_row_times_every_attack_of_the_cascade(capsys) -> None:
    from captum_topgap.evaluate.audit import AUDIT_ATTACKS

    assert main(["bench", "--quick", "--json", "--only", "robustness_audit_seconds_per_image"]) == 0
    row = json.loads(capsys.readouterr().out)["robustness_audit_seconds_per_image"]
    per_attack = [row[f"{name}_s_per_image"] for name in AUDIT_ATTACKS]
    assert all(value > 0 for value in per_attack) and row["ratio"] == pytest.approx(sum(per_attack))
    assert row["target"] == 20.0


def test_the_perception_row_times_pv_against_grad_cam_and_the_decoder(capsys) -> None:
    assert main(["bench", "--quick", "--json", "--repeats", "1", "--only", "perception_visualization_vs_gradcam"]) == 0
    row = json.loads(capsys.readouterr().out)["perception_visualization_vs_gradcam"]
    assert row["target"] == 1.5 and row["a_s"] > 0 and row["b_s"] > 0 and row["decoder_s"] > 0
    assert row["ratio"] == pytest.approx(row["a_s"] / row["b_s"])


def test_the_abn_row_times_both_branches_against_a_plain_step(capsys) -> None:
    assert main(["bench", "--quick", "--json", "--repeats", "1", "--only", "abn_train_step_vs_baseline"]) == 0
    row = json.loads(capsys.readouterr().out)["abn_train_step_vs_baseline"]
    assert row["target"] == 2.5 and row["ratio"] == pytest.approx(row["a_s"] / row["b_s"])
    assert row["mem_ratio"] > 1  # the attention branch's stride-1 layer4 saves more for the backward


@pytest.mark.slow
def test_the_annotator_row_reports_each_n(capsys) -> None:
    assert main(["bench", "--quick", "--json", "--repeats", "1", "--only", "pseudo_annotator_fit_n50_vs_n1"]) == 0
    row = json.loads(capsys.readouterr().out)["pseudo_annotator_fit_n50_vs_n1"]
    assert row["target"] == 2.0 and row["n1_s"] == row["b_s"] and row["n50_s"] == row["a_s"] and row["n10_s"] > 0
    assert row["per_step_s"] == pytest.approx(row["n1_s"] / 20)


@pytest.mark.slow
def test_the_resolution_row_times_each_finer_layer4_against_the_reference_step(capsys) -> None:
    name = "resnet18_output_stride8_step_vs_reference"
    assert main(["bench", "--quick", "--json", "--repeats", "1", "--only", name]) == 0
    row = json.loads(capsys.readouterr().out)[name]
    assert row["ratio"] == row["os8_ratio"] and row["a_s"] == row["os8_s"] and row["b_s"] == row["reference_s"]
    assert {key: row[f"{key}_layer4_side"] for key in RESOLUTIONS} == {"os16": 3, "os8": 6, "px96": 3, "px96_os16": 6}


def test_the_second_architecture_row_times_each_top_gap_network_against_the_resnet(capsys) -> None:
    """At the reference's 48 px and batch 32 whatever --quick says: the row answers whether the demo fits."""
    name = "topgap_efficientnet_b0_step_vs_resnet18"
    assert main(["bench", "--quick", "--json", "--repeats", "1", "--only", name]) == 0
    row = json.loads(capsys.readouterr().out)[name]
    assert row["ratio"] == row["topgap_efficientnet_b0_ratio"] and row["a_s"] == row["topgap_efficientnet_b0_s"]
    assert {f"{arch}_ratio" for arch in SECOND_ARCHITECTURES} <= set(row) and row["target"] == 3.0

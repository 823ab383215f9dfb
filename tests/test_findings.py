"""The measured mechanisms beside failing claims: each rule fires on the numbers that define it, and only there."""

from __future__ import annotations

from captum_topgap.app.findings import (
    agreement,
    audit,
    bound,
    digit_ceiling,
    evidence,
    follows,
    gamed,
    mechanisms,
    off_object,
    pipeline,
    texture,
    trails,
    undertrained,
)
from captum_topgap.app.report import audit_rows
from captum_topgap.evaluate.claims import Claim


def row(name: str, val: list[float], scenario: str = "s", collapsed: list[str] | None = None,
        **measures: float) -> dict:
    history = [{"val_accuracy": v} for v in val]
    if collapsed:
        history[-1].update(collapsed=collapsed, diagnostic={layer: {"positive_fraction": 0.01} for layer in collapsed})
    return {"scenario": scenario, "name": name, "history": history, "measures": measures}


def claim(direction: str, values: list[float], reference: list[float] | None, margin: float = 0.02) -> dict:
    spec = Claim("c", "s", "m", "a", None if reference is None else "b", direction, margin, "paper")
    values_by_key = {"a:m": values} | ({} if reference is None else {"b:m": reference})
    return spec.evaluate(values_by_key)


def test_agreement_tells_a_split_from_a_gap_that_is_too_small() -> None:
    split = claim("greater", [0.30, 0.10, 0.25], [0.20, 0.20, 0.20])
    assert not split["held"]
    assert agreement(split) == ["2 of 3 seeds on the claimed side (gaps +0.100, -0.100, +0.050): the claim fails on "
                                "agreement, not on the mean"]
    small = claim("greater", [0.21, 0.216], [0.20, 0.20])
    assert not small["held"] and "mean gap +0.013 is within max(0.02, pooled sd)" in agreement(small)[0]
    lower = claim("lower", [0.1, 0.3], [0.2, 0.2])
    assert agreement(lower)[0].startswith("1 of 2 seeds")
    worse = claim("not_worse", [0.90, 0.99], [1.0, 1.0], 0.02)
    assert agreement(worse) == ["1 of 2 seeds on the claimed side (gaps -0.100, -0.010): the claim fails on "
                                "agreement, not on the mean"]
    assert agreement(claim("not_worse", [0.8], [1.0])) == []  # every seed too low: not a question of agreement


def test_undertrained_fires_only_above_the_last_epoch_gain_threshold() -> None:
    rows = [row("a", [0.5, 0.8, 0.85]), row("b", [0.5, 0.9, 0.905])]
    assert undertrained(rows, "s", "a") == ["a's validation accuracy still rose +0.050 in its last epoch (to 0.850): "
                                            "stopped while learning, at this budget"]
    assert undertrained(rows, "s", "b") == []
    assert undertrained(rows, "other", "a") == []
    seeds = [row("c", [0.5, 0.8, 0.9]), row("c", [0.5, 0.9, 0.8])]  # the second kept its epoch 2 (restore_best)
    seeds[1]["history"][1]["restored"] = True
    assert undertrained(seeds, "s", "c") == ["c's validation accuracy still rose +0.050 in its last epoch (to 0.900): "
                                             "stopped while learning, at this budget"]
    seeds[0]["history"][1]["restored"] = True  # neither was stopped while learning
    assert undertrained(seeds, "s", "c") == []


def test_gamed_names_each_collapsed_layer_with_its_fraction() -> None:
    rows = [row("a", [0.5, 0.6], collapsed=["layer4"]), row("b", [0.5, 0.6])]
    assert gamed(rows, "s", "a") == ["a's explanation term was gamed: Grad-CAM collapsed (< 5 % positive) at layer4 "
                                     "(positive at 1.0 % at the end), which costs the classifier the layer's evidence"]
    assert gamed(rows, "s", "b") == []


def test_evidence_needs_map_mass_in_the_mask_and_pixel_mass_below_the_control() -> None:
    measures = {"mask_area": 0.12}
    rows = [row("a", [0.5], in_mask_share=0.40, erf_digit_share=0.18, **measures),
            row("b", [0.5], in_mask_share=0.07, erf_digit_share=0.11, **measures),
            row("c", [0.5], in_mask_share=0.40, erf_digit_share=0.30, **measures),
            row("control", [0.5], in_mask_share=0.03, erf_digit_share=0.25, **measures)]
    assert evidence(rows, "s", "a") == ["a moved Grad-CAM into the mask (in-mask share 0.400, mask area 0.120) but "
                                        "its pixel evidence did not follow: 0.180 of its input-gradient mass is on "
                                        "the digit, against 0.250 for the control that decides by the digit"]
    assert evidence(rows, "s", "b") == [] and evidence(rows, "s", "c") == [] and evidence(rows, "s", "control") == []
    assert evidence(rows[:3], "s", "a") == []  # no control, no comparison


def test_digit_ceiling_needs_a_control_below_the_baseline_and_a_model_off_the_background() -> None:
    def rows(control: float, follows: float) -> list[dict]:
        return [row("baseline", [1.0], in_distribution_accuracy=0.999, follows_background=0.985),
                row("a", [0.9], in_distribution_accuracy=0.948, follows_background=follows),
                row("control", [0.9], in_distribution_accuracy=control, follows_background=0.011)]

    spec = Claim("c", "s", "in_distribution_accuracy", "a", "baseline", "not_worse", 0.02, "paper")
    failed = spec.evaluate({"a:in_distribution_accuracy": [0.948], "baseline:in_distribution_accuracy": [0.999]})
    assert digit_ceiling(rows(0.933, 0.560), failed) == [
        "the background-swap control, which decides by the digit, reaches 0.933 in distribution against baseline's "
        "0.999 from the background cue: a follows the background in 0.560 of shifted predictions (baseline: 0.985), "
        "so the cue it gave up is bounded by how well the digit is learnt at this budget"]
    assert digit_ceiling(rows(0.990, 0.560), failed) == []  # the digit alone reaches the baseline: no ceiling
    assert digit_ceiling(rows(0.933, 0.990), failed) == []  # still on the background: not the reason
    assert digit_ceiling(rows(0.933, 0.560)[:2], failed) == []  # no control, no ceiling
    other = Claim("c", "s", "shifted_accuracy", "a", "baseline", "greater", 0.02, "paper").evaluate(
        {"a:shifted_accuracy": [0.1], "baseline:shifted_accuracy": [0.1]})
    assert digit_ceiling(rows(0.933, 0.560), other) == []
    assert mechanisms(failed, rows(0.933, 0.560))[-1].startswith("the background-swap control")


def test_bound_and_audit_and_the_unexplained_case() -> None:
    below = claim("at_least", [0.53, 0.47, 0.59], None, 0.5)
    assert bound(below) == ["1 of 3 seeds miss the bound 0.5 (0.470)"]
    seeds = [{"seed": 0, "verdict": "robust", "reasons": ["robust accuracy 0.594 ≥ 0.1 with no sign of masking"]},
             {"seed": 1, "verdict": "gradient-masked", "reasons": ["square1000 breaks 0.2"]}]
    report = {"s": {"a": {"verdict": "gradient-masked", "seeds": seeds}}}
    masked = {**claim("below", [1.0], None, 0.5), "measure": "gradient_masked"}
    assert audit(report, masked) == ["audit verdict gradient-masked: seed 1: square1000 breaks 0.2"]
    assert audit(report, {**masked, "measure": "accuracy"}) == []  # clean accuracy is not the audit's to explain
    assert audit({"s": {"a": {"verdict": "robust", "seeds": []}}}, masked) == []
    held = claim("greater", [0.9], [0.1])
    assert held["held"] and mechanisms(held, []) == []
    tie = claim("greater", [0.2], [0.2])
    assert mechanisms(tie, [row("a", [0.2]), row("b", [0.2])]) == [
        "no measured mechanism among the fixed checks (agreement, training, learning speed, top-k positions, "
        "background, texture, pipeline, collapse, pixel evidence, digit ceiling, audit): unexplained"]


def test_the_audit_table_quotes_the_reasons_of_the_seeds_that_gave_the_verdict() -> None:
    seeds = [{"seed": s, "verdict": v, "reasons": [r], "sweep": {"16/255": 0.0}, "clean": 1.0, "pgd20": 0.5}
             for s, v, r in ((0, "robust", "robust accuracy 0.594 ≥ 0.1 with no sign of masking"),
                             (1, "gradient-masked", "pgd50 breaks 0.062 of the images (> 0.05)"))]
    entry = {"seeds": seeds, "clean": 1.0, "pgd20": 0.5, "robust_accuracy": 0.5, "verdict": "gradient-masked"}
    header, rows = audit_rows({"topgap": entry})
    assert header[-1] == "reasons (the seeds with that verdict)"
    assert rows == [["topgap", "1.000", "0.500", "0.000", "0.500", "gradient-masked",
                     "seed 1: pgd50 breaks 0.062 of the images (> 0.05)"]]


def seeded(name: str, val: list[float], seed: int, scenario: str = "s", **measures: float) -> dict:
    return {**row(name, val, scenario, **measures), "seed": seed}


def test_trails_names_the_missing_seeds_that_were_behind_at_every_epoch() -> None:
    failed = {**claim("not_worse", [0.97, 0.94, 0.95], [0.97, 0.98, 0.96], 0.01), "measure": "accuracy"}
    rows = [seeded("a", [0.3, 0.9, 0.96], 0), seeded("a", [0.29, 0.88, 0.964], 1), seeded("a", [0.5, 0.8, 0.95], 2),
            seeded("b", [0.4, 0.9, 0.97], 0), seeded("b", [0.41, 0.95, 0.978], 1), seeded("b", [0.4, 0.9, 0.96], 2)]
    # seed 0 is on the claimed side; seed 1 trails at every epoch; seed 2 misses but led in epoch 1
    assert trails(rows, failed) == ["seed 1: a's validation accuracy trailed b's at every epoch (-0.120, -0.070, "
                                    "-0.014; best 0.964 vs 0.978): it learns slower, and this budget stopped it behind"]
    assert trails(rows, {**failed, "measure": "in_distribution_accuracy"}) == []  # its validation split differs
    assert any(line.startswith("seed 1: a's validation") for line in mechanisms(failed, rows))


def test_off_object_quotes_where_the_missing_seeds_top_k_positions_lie_and_which_stage_chose_them() -> None:
    failed = {**claim("greater", [0.21, 0.05], [0.10, 0.10], 0.01), "measure": "iou/topgap_cam"}

    def topgap_row(seed: int, on_object: float, deep: float) -> dict:
        return seeded("a", [0.9], seed, topk_on_object=on_object, mask_area=0.118, cam_positions=144.0,
                      **{"topk_stage_share/layer3": 1 - deep, "topk_stage_share/layer4": deep,
                         "stage_positions/layer3": 9.0, "stage_positions/layer4": 4.0})

    rows = [topgap_row(0, 0.386, 0.285), topgap_row(1, 0.082, 0.726)]
    assert off_object(rows, failed) == [
        "seed 1: 0.082 of its top-k positions lie on the object (mask area 0.118, what random positions cover; seeds "
        "0: 0.386), and layer4 — 4 positions, upsampled to the CAM's 144 — gives 0.726 of the class score there "
        "(seeds 0: 0.285)"]
    assert off_object(rows, {**failed, "measure": "accuracy"}) == []
    assert off_object(rows, {**failed, "measure": "worst_group_accuracy"})[0].startswith("seed 1: 0.082 of its top-k")
    assert off_object([seeded("a", [0.9], 0), seeded("a", [0.9], 1)], failed) == []  # not a Top-GAP network


def test_a_failed_shift_claim_says_how_often_each_model_follows_the_background() -> None:
    failed = {**claim("greater", [0.10, 0.11], [0.10, 0.10]), "measure": "shifted_accuracy", "reference": "b"}
    rows = [seeded(name, [0.9], seed, follows_background=rate)
            for name, seed, rate in (("a", 0, 0.9), ("a", 1, 0.8), ("b", 0, 0.96), ("b", 1, 0.96))]
    assert follows(rows, failed) == [
        "shifted predictions that name the class of the image's background (follows background): a 0.850, b 0.960"]
    assert follows(rows, {**failed, "measure": "iou/gradcam"}) == []  # not a shift claim
    assert follows(rows, {**failed, "measure": "follows_background"}) == []  # the claim is the rate itself
    assert follows([seeded("a", [0.9], 0)], failed) == []  # nothing measured
    assert follows(rows, failed)[0] in mechanisms(failed, rows)


def test_a_failed_sketch_claim_says_what_a_random_texture_costs_each_model() -> None:
    failed = {**claim("greater", [0.10, 0.09], [0.11, 0.10]), "measure": "sketch_accuracy", "reference": "b"}
    rows = [seeded(name, [0.9], seed, accuracy=plain, random_texture_accuracy=random)
            for name, seed, plain, random in (("a", 0, 0.96, 0.30), ("a", 1, 0.98, 0.34), ("b", 0, 0.97, 0.35),
                                              ("b", 1, 0.97, 0.33))]
    assert texture(rows, failed) == [
        "accuracy with the digit's texture drawn at random (test → random texture): a 0.970 → 0.320, b 0.970 → "
        "0.340: what the models read is largely the texture a sketch removes"]
    assert texture(rows, {**failed, "measure": "corruption_accuracy"}) == []
    shape_readers = [{**row, "measures": {**row["measures"], "random_texture_accuracy": 0.95}} for row in rows]
    assert texture(shape_readers, failed)[0].endswith("b 0.970 → 0.950")  # no texture reading to report
    assert texture([seeded("a", [0.9], 0, accuracy=0.9)], failed) == []  # not measured
    assert texture(rows, failed)[0] in mechanisms(failed, rows)


def test_a_failed_expansion_claim_scores_the_pipeline_step_by_step_and_names_the_step_that_loses() -> None:
    failed = {**claim("greater", [0.11, 0.12], [0.12, 0.13], 0.01), "measure": "pxap/expansion_refined",
              "reference": "a", "reference_measure": "pxap/expansion_low"}
    steps = ("low", "high", "blurred", "roi", "grown", "edged", "filled", "refined")
    seed0 = dict(zip(steps, (0.12, 0.10, 0.10, 0.11, 0.12, 0.12, 0.12, 0.11), strict=True))
    seed1 = dict(zip(steps, (0.14, 0.12, 0.12, 0.11, 0.12, 0.12, 0.12, 0.13), strict=True))
    rows = [seeded("a", [0.9], seed, **{f"expansion/{s}/pxap": v for s, v in values.items()},
                   **{"expansion_scaled/refined/pxap": 0.125 + seed / 100})
            for seed, values in ((0, seed0), (1, seed1))]
    assert pipeline(rows, failed) == [
        "pxap step by step: low 0.130 → high 0.110 → blurred 0.110 → roi 0.110 → grown 0.120 → edged 0.120 → filled "
        "0.120 → refined 0.120 (mean over seeds); the step that loses most: high (-0.020 against low); with the blur "
        "and hole area scaled to the image the refined map scores 0.130"]
    assert pipeline(rows, {**failed, "measure": "pxap/gradcam"}) == []  # not an Expansion CAM map
    assert pipeline([seeded("a", [0.9], 0)], failed) == []  # not measured
    assert pipeline(rows, failed)[0] in mechanisms(failed, rows)

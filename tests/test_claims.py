"""Claims are judged by criteria fixed in code: exact verdicts on fixed numbers (held, not held, tie)."""

from __future__ import annotations

import pytest

from captum_topgap.evaluate.claims import Claim, criterion_text, judge, mean_sd


def test_greater_holds_when_every_seed_agrees_and_the_gap_exceeds_the_pooled_sd() -> None:
    verdict = judge([0.30, 0.32, 0.34], [0.10, 0.11, 0.12], "greater", 0.02)
    assert verdict["held"] and verdict["gap"] == pytest.approx(0.21) and verdict["pooled_sd"] == pytest.approx(
        ((0.02 ** 2 + 0.01 ** 2) / 2) ** 0.5)
    assert verdict["seeds"] == 3 and verdict["criterion"] == "every seed higher and mean gap > max(0.02, pooled sd)"


def test_greater_fails_when_one_seed_disagrees_or_the_gap_is_within_the_noise() -> None:
    assert not judge([0.30, 0.05, 0.34], [0.10, 0.11, 0.12], "greater", 0.02)["held"]      # one seed lower
    assert not judge([0.20, 0.60, 0.21], [0.10, 0.50, 0.11], "greater", 0.02)["held"]      # gap 0.1 < sd ≈ 0.23
    assert not judge([0.12], [0.11], "greater", 0.02)["held"]                              # under the margin


def test_a_tie_never_holds_a_greater_or_lower_claim() -> None:
    assert not judge([0.2, 0.3], [0.2, 0.3], "greater", 0.0)["held"]
    assert not judge([0.2, 0.3], [0.2, 0.3], "lower", 0.0)["held"]
    assert judge([0.2, 0.3], [0.2, 0.3], "not_worse", 0.0)["held"]


def test_lower_not_worse_and_bounds() -> None:
    assert judge([0.1, 0.2], [0.9, 0.95], "lower", 0.05)["held"]
    assert judge([0.90, 0.97], [0.91, 0.96], "not_worse", 0.02)["held"]
    assert not judge([0.85, 0.97], [0.91, 0.96], "not_worse", 0.02)["held"]
    assert judge([0.0, 0.01], None, "below", 0.05)["held"] and not judge([0.0, 0.06], None, "below", 0.05)["held"]
    assert judge([0.05, 0.5], None, "at_least", 0.05)["held"] and not judge([0.04], None, "at_least", 0.05)["held"]


def test_one_seed_has_no_spread_and_bad_inputs_are_refused() -> None:
    assert mean_sd([0.4]) == (0.4, 0.0)
    assert judge([0.2], [0.1], "greater", 0.05)["pooled_sd"] == 0.0
    with pytest.raises(ValueError, match=r"`b` must hold one value per seed of `a` \(2\)"):
        judge([0.1, 0.2], [0.1], "greater", 0.0)
    with pytest.raises(ValueError, match=r"`direction` must be one of"):
        criterion_text("bigger", 0.0)
    with pytest.raises(ValueError, match=r"one finite value per seed"):
        judge([float("nan")], [0.1], "greater", 0.0)


def test_a_claim_reads_its_measures_by_model_and_measure() -> None:
    claim = Claim("CAM beats Grad-CAM", "object", "iou/topgap_cam", "topgap", "baseline", "greater", 0.01,
                  "0.435 vs 0.268", reference_measure="iou/gradcam")
    row = claim.evaluate({"topgap:iou/topgap_cam": [0.2, 0.25], "baseline:iou/gradcam": [0.1, 0.12]})
    assert row["held"] and row["values"] == [0.2, 0.25] and row["reference_values"] == [0.1, 0.12]
    assert row["paper"] == "0.435 vs 0.268" and row["scenario"] == "object"

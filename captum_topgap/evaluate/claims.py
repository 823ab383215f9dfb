"""A paper's claim against our numbers, judged by a criterion fixed in code before any run.

A claim compares one measure of two models trained with the same seeds ("Top-GAP's IoU is higher than
Grad-CAM's"), or one model's measure against a fixed bound ("the maps are not collapsed"). With a_i, b_i
the values of seed i and d_i = a_i − b_i (b_i − a_i for ``"lower"``), the verdicts are:

=============== ==========================================================================================
``"greater"``   held iff d_i > 0 for every seed and mean(d) > max(margin, pooled sd)
``"lower"``     the same with the sign flipped
``"not_worse"`` held iff d_i ≥ −margin for every seed (non-inferiority within the margin)
``"at_least"``  held iff a_i ≥ margin for every seed (b is not used)
``"below"``     held iff a_i < margin for every seed
=============== ==========================================================================================

pooled sd = √((sd_a² + sd_b²) / 2) with the sample standard deviations (ddof = 1); with one seed it is 0
and the verdict is only indicative. A tie (d = 0) never holds a ``"greater"`` claim.

Example:
    >>> judge([0.30, 0.35, 0.32], [0.10, 0.12, 0.11], "greater", 0.02)["held"]
    True
    >>> judge([0.12, 0.09, 0.11], [0.10, 0.11, 0.10], "greater", 0.02)["held"]
    False
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DIRECTIONS = ("greater", "lower", "not_worse", "at_least", "below")


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value).

    Example:
        >>> mean_sd([1.0, 2.0, 3.0])
        (2.0, 1.0)
    """
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def criterion_text(direction: str, margin: float) -> str:
    """The criterion of a direction and margin in words, as printed beside each verdict.

    Example:
        >>> criterion_text("greater", 0.02)
        'every seed higher and mean gap > max(0.02, pooled sd)'
    """
    texts = {
        "greater": f"every seed higher and mean gap > max({margin:g}, pooled sd)",
        "lower": f"every seed lower and mean gap > max({margin:g}, pooled sd)",
        "not_worse": f"every seed at most {margin:g} lower",
        "at_least": f"every seed ≥ {margin:g}",
        "below": f"every seed < {margin:g}",
    }
    if direction not in texts:
        raise ValueError(f"`direction` must be one of {DIRECTIONS}, got {direction!r}.")
    return texts[direction]


def judge(a: Sequence[float], b: Sequence[float] | None, direction: str, margin: float) -> dict[str, Any]:
    """The verdict of one claim from per-seed values ``a`` (the claimed model) and ``b`` (its reference).

    Returns ``{"held", "gap", "pooled_sd", "seeds", "criterion"}``; ``gap`` is mean(d) (or mean(a) for
    the bound directions).

    Example:
        >>> judge([0.2], [0.2], "greater", 0.0)["held"]   # a tie does not hold
        False
        >>> judge([0.03, 0.01], None, "below", 0.05)["held"]
        True
    """
    criterion = criterion_text(direction, margin)
    a = [float(v) for v in a]
    if not a or any(math.isnan(v) for v in a):
        raise ValueError("`a` must hold one finite value per seed.")
    if direction in ("at_least", "below"):
        held = all(v >= margin for v in a) if direction == "at_least" else all(v < margin for v in a)
        return {"held": held, "gap": statistics.fmean(a), "pooled_sd": mean_sd(a)[1], "seeds": len(a),
                "criterion": criterion}
    if b is None or len(b) != len(a):
        raise ValueError(f"`b` must hold one value per seed of `a` ({len(a)}), got {b!r}.")
    b = [float(v) for v in b]
    sign = -1.0 if direction == "lower" else 1.0
    gaps = [sign * (x - y) for x, y in zip(a, b, strict=True)]
    pooled = math.sqrt((mean_sd(a)[1] ** 2 + mean_sd(b)[1] ** 2) / 2)
    gap = statistics.fmean(gaps)
    if direction == "not_worse":
        held = all(d >= -margin for d in gaps)
    else:
        held = all(d > 0 for d in gaps) and gap > max(margin, pooled)
    return {"held": held, "gap": gap, "pooled_sd": pooled, "seeds": len(a), "criterion": criterion}


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, tested on one measure of the demo's models.

    Args:
        text: the claim as a sentence.
        scenario: ``"object"`` or ``"spurious"``.
        measure: the key of the measure in each model's results (``"shifted_accuracy"``, ``"iou/gradcam"``).
        model: the model the claim is about; ``reference``: the one it is compared with (None for bounds).
        direction, margin: the criterion (see the module docstring), fixed before the run.
        paper: the paper's own figure, as text.
        reference_measure: the reference's measure when it differs (Top-GAP CAM vs the baseline's Grad-CAM).
    """

    text: str
    scenario: str
    measure: str
    model: str
    reference: str | None
    direction: str
    margin: float
    paper: str
    reference_measure: str | None = None

    def evaluate(self, values: dict[str, list[float]]) -> dict[str, Any]:
        """The claim's row: its fields, the per-seed values of both sides and the verdict.

        ``values`` maps ``"model:measure"`` to the per-seed values.

        Example:
            >>> claim = Claim("A beats B", "object", "acc", "a", "b", "greater", 0.02, "paper: 0.9 vs 0.8")
            >>> claim.evaluate({"a:acc": [0.9, 0.92], "b:acc": [0.8, 0.79]})["held"]
            True
        """
        ours = values[f"{self.model}:{self.measure}"]
        reference = None if self.reference is None else values[
            f"{self.reference}:{self.reference_measure or self.measure}"]
        verdict = judge(ours, reference, self.direction, self.margin)
        return {"claim": self.text, "scenario": self.scenario, "measure": self.measure, "model": self.model,
                "reference": self.reference, "paper": self.paper, "values": ours, "reference_values": reference,
                "direction": self.direction, "margin": self.margin, **verdict}

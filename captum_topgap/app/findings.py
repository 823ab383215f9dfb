"""The measured mechanism beside every claim that did not hold: fixed checks on the demo's own numbers.

A "did not hold" is a finding to explain. Each check below reads what the run measured and, when its rule
fires, writes one sentence with the numbers:

- **agreement** — some seeds on the claimed side and some not (the claim fails on agreement, not on the
  mean), or every seed on the claimed side with a mean gap inside max(margin, pooled sd);
- **undertrained** — the model's validation accuracy still rose by more than ``RISING`` in its last epoch
  (mean over seeds; a seed that kept an earlier, better epoch counts 0): the budget stopped it while it was
  learning;
- **gamed** — a layer its explanation term regularises collapsed during training (the true class's Grad-CAM
  positive at < 5 % of positions, :mod:`captum_topgap.evaluate.diagnostics`);
- **evidence in the map, not in the pixels** — Grad-CAM's in-mask share is ``MOVED`` above the mask's area while the
  ERF's share of input-gradient mass on the digit stays below the background-swap control's (the model
  that decides by the digit);
- **digit ceiling** — an in-distribution accuracy claim against a baseline that reads the background, when the
  background-swap control (which decides by the digit) is itself more than the claim's margin below that
  baseline: a model moved off the background cue is bounded by how well the digit is learnt at this budget;
- **trails** — for an accuracy claim against a reference, a seed that misses it whose validation accuracy was
  below the reference's at every epoch: it learns slower, and the budget stopped it behind;
- **off the object** — for a localisation (IoU, PxAP, MaxBoxAccV2) or shift claim on a Top-GAP network, a seed
  that misses it: the share of its top-k positions on the object against the mask's area, and the stage of the
  fused map that gives most of the class score there (:func:`~captum_topgap.evaluate.diagnostics.topk_evidence`);
- **follows the background** — for a shift claim, how often the model and its reference name the class whose
  training background the shifted image shows;
- **texture** — for a texture-free (sketch) claim, each model's accuracy with the digit's texture drawn at random
  beside its test accuracy: what a sketch removes is what they read;
- **pipeline** — for a claim on an Expansion CAM map, the claim's metric at every step of the refinement (mean
  over seeds), the step that loses most against the map it is computed from, and the refined map with the pixel
  constants scaled to the image;
- **bound** — the seeds below (or at) the bound of an ``at_least`` / ``below`` claim;
- **audit** — the audit's reasons for a model whose verdict is not *robust*.

When no rule fires the sentence says so: the mechanism is then unmeasured, and the report says that too.

Example:
    >>> claim = {"model": "a", "reference": "b", "scenario": "s", "direction": "greater", "margin": 0.02,
    ...          "values": [0.3, 0.1], "reference_values": [0.2, 0.2], "held": False, "measure": "m"}
    >>> mechanisms(claim, [])
    ['1 of 2 seeds on the claimed side (gaps +0.100, -0.100): the claim fails on agreement, not on the mean']
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from captum_topgap.evaluate.diagnostics import COLLAPSE_THRESHOLD
from captum_topgap.methods.expansion_cam import COMPUTED_FROM, PIPELINE
from captum_topgap.train.loop import kept_record

RISING = 0.01
"""A last-epoch gain in validation accuracy above this means the model was still learning."""
MOVED = 0.05
"""Grad-CAM's in-mask share this far above the mask's area counts as mass moved into the mask."""
TEXTURE_LOSS = 0.1
"""A model that loses more than this much accuracy when the digit's texture is drawn at random reads the texture."""


def _runs(rows: Sequence[dict[str, Any]], scenario: str, name: str | None) -> list[dict[str, Any]]:
    return [row for row in rows if row["scenario"] == scenario and row["name"] == name]


def _sides(claim: dict[str, Any]) -> tuple[list[float], list[bool]]:
    """The per-seed gaps of a comparative claim (signed so that positive is the claimed side) and whether
    each seed is on the claimed side; empty without a reference.
    """
    reference = claim.get("reference_values")
    if reference is None:
        return [], []
    sign = -1.0 if claim["direction"] == "lower" else 1.0
    gaps = [sign * (a - b) for a, b in zip(claim["values"], reference, strict=True)]
    if claim["direction"] == "not_worse":
        return gaps, [gap >= -claim["margin"] for gap in gaps]
    return gaps, [gap > 0.0 for gap in gaps]


def agreement(claim: dict[str, Any]) -> list[str]:
    """The seeds' agreement of a comparative claim: which seeds are on the claimed side, and the gaps."""
    gaps, sides = _sides(claim)
    if not gaps:
        return []
    on_side = sum(sides)
    text = ", ".join(f"{gap:+.3f}" for gap in gaps)
    if 0 < on_side < len(gaps):
        return [f"{on_side} of {len(gaps)} seeds on the claimed side (gaps {text}): the claim fails on agreement, "
                "not on the mean"]
    if on_side == len(gaps) and claim["direction"] != "not_worse":
        return [f"every seed on the claimed side, but the mean gap {statistics.fmean(gaps):+.3f} is within "
                f"max({claim['margin']:g}, pooled sd): too small to count"]
    return []


def undertrained(rows: Sequence[dict[str, Any]], scenario: str, name: str) -> list[str]:
    """Whether ``name`` was still learning when training stopped (last-epoch validation gain > ``RISING``).

    A run that kept an earlier epoch (``restore_best``: its accuracy fell after it) was not stopped while
    learning and counts a gain of 0; the accuracy quoted is that of the kept epochs.
    """
    runs = [run for run in _runs(rows, scenario, name)
            if len(run["history"]) > 1 and "val_accuracy" in run["history"][-1]]
    gains = [run["history"][-1]["val_accuracy"] - run["history"][-2]["val_accuracy"]
             if kept_record(run["history"]) is run["history"][-1] else 0.0 for run in runs]
    if gains and statistics.fmean(gains) > RISING:
        kept = statistics.fmean(kept_record(run["history"])["val_accuracy"] for run in runs)
        return [f"{name}'s validation accuracy still rose {statistics.fmean(gains):+.3f} in its last epoch (to "
                f"{kept:.3f}): stopped while learning, at this budget"]
    return []


def gamed(rows: Sequence[dict[str, Any]], scenario: str, name: str) -> list[str]:
    """The regularised layers of ``name`` that collapsed during training, with their last positive fraction."""
    collapsed: dict[str, list[float]] = {}
    for run in _runs(rows, scenario, name):
        last = run["history"][-1]
        for layer in {layer for record in run["history"] for layer in record.get("collapsed", [])}:
            collapsed.setdefault(layer, []).append(last.get("diagnostic", {}).get(layer, {}).get(
                "positive_fraction", 0.0))
    if not collapsed:
        return []
    layers = ", ".join(f"{layer} (positive at {100 * statistics.fmean(v):.1f} % at the end)"
                       for layer, v in sorted(collapsed.items()))
    return [f"{name}'s explanation term was gamed: Grad-CAM collapsed (< {100 * COLLAPSE_THRESHOLD:.0f} % "
            f"positive) at {layers}, which costs the classifier the layer's evidence"]


def _mean(rows: Sequence[dict[str, Any]], scenario: str, name: str, measure: str) -> float | None:
    values = [run["measures"][measure] for run in _runs(rows, scenario, name) if measure in run.get("measures", {})]
    return statistics.fmean(values) if values else None


def evidence(rows: Sequence[dict[str, Any]], scenario: str, name: str) -> list[str]:
    """Grad-CAM mass moved into the mask while the pixel evidence (ERF) stays below the control's."""
    found = [_mean(rows, scenario, model, measure) for model, measure in (
        (name, "in_mask_share"), (name, "erf_digit_share"), (name, "mask_area"), ("control", "erf_digit_share"))]
    if name == "control" or None in found:
        return []
    share, erf, area, control = (float(value or 0.0) for value in found)
    if share > area + MOVED and erf < control:
        return [f"{name} moved Grad-CAM into the mask (in-mask share {share:.3f}, mask area {area:.3f}) but its "
                f"pixel evidence did not follow: {erf:.3f} of its input-gradient mass is on the digit, against "
                f"{control:.3f} for the control that decides by the digit"]
    return []


def digit_ceiling(rows: Sequence[dict[str, Any]], claim: dict[str, Any]) -> list[str]:
    """An in-distribution accuracy claim that the control, deciding by the digit, would fail too: the baseline's
    figure comes from the background cue, and the claimed model gave part of it up (it follows the background
    less often under the shift).
    """
    name, reference = claim["model"], claim.get("reference")
    if claim["measure"] != "in_distribution_accuracy" or reference is None or name == "control":
        return []
    found = [_mean(rows, claim["scenario"], model, measure) for model, measure in (
        ("control", "in_distribution_accuracy"), (reference, "in_distribution_accuracy"),
        (name, "follows_background"), (reference, "follows_background"))]
    if None in found:
        return []
    control, baseline, follows, reference_follows = (float(value or 0.0) for value in found)
    if control >= baseline - claim["margin"] or follows >= reference_follows:
        return []
    return [f"the background-swap control, which decides by the digit, reaches {control:.3f} in distribution "
            f"against {reference}'s {baseline:.3f} from the background cue: {name} follows the background in "
            f"{follows:.3f} of shifted predictions ({reference}: {reference_follows:.3f}), so the cue it gave up is "
            "bounded by how well the digit is learnt at this budget"]


def trails(rows: Sequence[dict[str, Any]], claim: dict[str, Any]) -> list[str]:
    """For an accuracy claim against a reference: the seeds that miss it whose validation accuracy (a split drawn
    like the test split) trailed the reference's at every epoch — the model learns slower, and the budget
    stopped it behind.
    """
    reference = claim.get("reference")
    if claim["measure"] != "accuracy" or reference is None:
        return []
    found = []
    pairs = zip(_runs(rows, claim["scenario"], claim["model"]), _runs(rows, claim["scenario"], reference),
                _sides(claim)[1], strict=False)
    for run, other, on_side in pairs:
        ours = [record.get("val_accuracy") for record in run["history"]]
        theirs = [record.get("val_accuracy") for record in other["history"]]
        if on_side or len(ours) != len(theirs) or None in ours + theirs:
            continue
        if all(a < b for a, b in zip(ours, theirs, strict=True)):
            text = ", ".join(f"{a - b:+.3f}" for a, b in zip(ours, theirs, strict=True))
            found.append(f"seed {run['seed']}: {claim['model']}'s validation accuracy trailed {reference}'s at every "
                         f"epoch ({text}; best {max(ours):.3f} vs {max(theirs):.3f}): it learns slower, and this "
                         "budget stopped it behind")
    return found


SHIFT_MEASURES = frozenset({"shifted_accuracy", "worst_group_accuracy", "group_average", "follows_background"})
"""The measures of a claim about a distribution shift (the mechanisms read where the model's evidence lies)."""


def off_object(rows: Sequence[dict[str, Any]], claim: dict[str, Any]) -> list[str]:
    """For a localisation claim (``iou/``, ``pxap/``, ``max_box_acc_v2/``) or a shift claim
    (:data:`SHIFT_MEASURES`) on a Top-GAP network: where the top-k positions of the seeds that miss it lie,
    against the mask's area (what random positions cover), and which stage of the fused map gives most of the
    class score there (:func:`~captum_topgap.evaluate.diagnostics.topk_evidence`), beside the other seeds.
    """
    runs = _runs(rows, claim["scenario"], claim["model"])
    measure = claim["measure"]
    localisation = measure.startswith(("iou/", "pxap/", "max_box_acc_v2/"))
    if not (localisation or measure in SHIFT_MEASURES) or not runs or any(
            "topk_on_object" not in run["measures"] for run in runs):
        return []
    found = []
    for run, on_side in zip(runs, _sides(claim)[1], strict=False):
        if on_side:
            continue
        others = [other for other in runs if other is not run]
        shares = {key: value for key, value in run["measures"].items() if key.startswith("topk_stage_share/")}
        key = max(shares, key=shares.__getitem__)
        stage = key.removeprefix("topk_stage_share/")
        measures = run["measures"]
        seeds = ", ".join(str(other["seed"]) for other in others)
        on_object = ", ".join(f"{other['measures']['topk_on_object']:.3f}" for other in others)
        share = ", ".join(f"{other['measures'][key]:.3f}" for other in others)
        found.append(f"seed {run['seed']}: {measures['topk_on_object']:.3f} of its top-k positions lie on the object "
                     f"(mask area {measures['mask_area']:.3f}, what random positions cover; seeds {seeds}: "
                     f"{on_object}), and {stage} — {measures[f'stage_positions/{stage}']:.0f} positions, upsampled "
                     f"to the CAM's {measures['cam_positions']:.0f} — gives {shares[key]:.3f} of the class score "
                     f"there (seeds {seeds}: {share})")
    return found


def follows(rows: Sequence[dict[str, Any]], claim: dict[str, Any]) -> list[str]:
    """For a shift claim: the share of shifted predictions that follow the background, the model's beside its
    reference's (mean over seeds).
    """
    if claim["measure"] not in SHIFT_MEASURES or claim["measure"] == "follows_background":
        return []
    names = [name for name in (claim["model"], claim.get("reference")) if name]
    rates = [_mean(rows, claim["scenario"], name, "follows_background") for name in names]
    if any(rate is None for rate in rates):
        return []
    told = ", ".join(f"{name} {rate:.3f}" for name, rate in zip(names, rates, strict=True))
    return [f"shifted predictions that name the class of the image's background (follows background): {told}"]


def texture(rows: Sequence[dict[str, Any]], claim: dict[str, Any]) -> list[str]:
    """For a sketch claim: each model's accuracy on the test digits with a random texture, beside its test
    accuracy (mean over seeds) — a model that falls there reads the digit's texture, which a sketch removes.
    """
    if claim["measure"] != "sketch_accuracy":
        return []
    told, losses = [], []
    for name in (name for name in (claim["model"], claim.get("reference")) if name):
        random, plain = (_mean(rows, claim["scenario"], name, key) for key in ("random_texture_accuracy", "accuracy"))
        if random is None or plain is None:
            return []
        told.append(f"{name} {plain:.3f} → {random:.3f}")
        losses.append(plain - random)
    reading = (": what the models read is largely the texture a sketch removes" if min(losses) > TEXTURE_LOSS
               else "")
    return [f"accuracy with the digit's texture drawn at random (test → random texture): {', '.join(told)}{reading}"]


def pipeline(rows: Sequence[dict[str, Any]], claim: dict[str, Any]) -> list[str]:
    """For a claim on an Expansion CAM map (``KEY/expansion_*``): KEY at every step of the refinement (mean over
    seeds, :data:`~captum_topgap.methods.expansion_cam.PIPELINE`), the step that loses most against the map it is
    computed from (:data:`~captum_topgap.methods.expansion_cam.COMPUTED_FROM`), and the refined map's KEY with the
    pixel constants scaled to the image.

    Example:
        >>> steps = dict(zip(PIPELINE, (0.3, 0.5, 0.5, 0.2, 0.3, 0.3, 0.3, 0.4)))
        >>> measures = {**{f"expansion/{s}/pxap": v for s, v in steps.items()}, "expansion_scaled/refined/pxap": 0.45}
        >>> rows = [{"scenario": "s", "name": "a", "measures": measures}]
        >>> pipeline(rows, {"scenario": "s", "model": "a", "measure": "pxap/expansion_refined"})[0][:60]
        'pxap step by step: low 0.300 → high 0.500 → blurred 0.500 → '
    """
    key, _, method = claim["measure"].partition("/")
    runs = _runs(rows, claim["scenario"], claim["model"])
    if not method.startswith("expansion_") or not runs or any(
            f"expansion/refined/{key}" not in run["measures"] for run in runs):
        return []
    means = {step: statistics.fmean(run["measures"][f"expansion/{step}/{key}"] for run in runs) for step in PIPELINE}
    changes = {step: means[step] - means[source] for step, source in COMPUTED_FROM.items()}
    worst = min(changes, key=changes.__getitem__)
    scaled = statistics.fmean(run["measures"][f"expansion_scaled/refined/{key}"] for run in runs)
    chain = " → ".join(f"{step} {value:.3f}" for step, value in means.items())
    return [f"{key} step by step: {chain} (mean over seeds); the step that loses most: {worst} "
            f"({changes[worst]:+.3f} against {COMPUTED_FROM[worst]}); with the blur and hole area scaled to the image "
            f"the refined map scores {scaled:.3f}"]


def bound(claim: dict[str, Any]) -> list[str]:
    """The seeds that miss the bound of an ``at_least`` / ``below`` claim."""
    if claim["direction"] not in ("at_least", "below"):
        return []
    missed = [f"{v:.3f}" for v in claim["values"]
              if (v < claim["margin"] if claim["direction"] == "at_least" else v >= claim["margin"])]
    return [f"{len(missed)} of {len(claim['values'])} seeds miss the bound {claim['margin']:g} "
            f"({', '.join(missed)})"] if missed else []


def verdict_reasons(entry: dict[str, Any]) -> list[str]:
    """The reasons of the seeds whose audit verdict is the model's (results.json's ``audit[scenario][model]``),
    each named by its seed: for a model *gradient-masked* in one seed of three, that seed's sign of masking.

    Example:
        >>> verdict_reasons({"verdict": "gradient-masked", "seeds": [
        ...     {"seed": 0, "verdict": "robust", "reasons": ["robust accuracy 0.6 ≥ 0.1"]},
        ...     {"seed": 1, "verdict": "gradient-masked", "reasons": ["pgd50 breaks 0.062"]}]})
        ['seed 1: pgd50 breaks 0.062']
    """
    return [f"seed {seed['seed']}: {reason}" for seed in entry["seeds"] if seed["verdict"] == entry["verdict"]
            for reason in seed["reasons"]]


def audit(report_audit: dict[str, Any], claim: dict[str, Any]) -> list[str]:
    """The audit's reasons for the claimed model when its verdict is not *robust*, from the seeds that gave it —
    for a claim on an attack's accuracy or on the verdict (not, say, on clean accuracy).
    """
    entry = report_audit.get(claim["scenario"], {}).get(claim["model"])
    if not entry or entry["verdict"] == "robust" or claim["measure"] not in (*entry, "gradient_masked"):
        return []
    return [f"audit verdict {entry['verdict']}: " + "; ".join(verdict_reasons(entry))]


def mechanisms(claim: dict[str, Any], rows: Sequence[dict[str, Any]],
               report_audit: dict[str, Any] | None = None) -> list[str]:
    """Every measured mechanism of a claim that did not hold (empty for a claim that held).

    Example:
        >>> rows = [{"scenario": "s", "name": "a", "measures": {}, "history": [
        ...     {"val_accuracy": 0.6}, {"val_accuracy": 0.8, "collapsed": ["layer4"],
        ...                             "diagnostic": {"layer4": {"positive_fraction": 0.004}}}]}]
        >>> claim = {"model": "a", "reference": None, "scenario": "s", "direction": "at_least", "margin": 0.9,
        ...          "values": [0.8], "held": False, "measure": "accuracy"}
        >>> for line in mechanisms(claim, rows):
        ...     print(line)
        1 of 1 seeds miss the bound 0.9 (0.800)
        a's validation accuracy still rose +0.200 in its last epoch (to 0.800): stopped while learning, at this budget
        a's explanation term was gamed: Grad-CAM collapsed (< 5 % positive) at layer4 (positive at 0.4 % at the \
end), which costs the classifier the layer's evidence
    """
    if claim["held"]:
        return []
    found = [*bound(claim), *agreement(claim)]
    for name in dict.fromkeys(filter(None, (claim["model"], claim.get("reference")))):
        found += undertrained(rows, claim["scenario"], name) + gamed(rows, claim["scenario"], name)
    found += trails(rows, claim) + off_object(rows, claim) + follows(rows, claim) + texture(rows, claim)
    found += pipeline(rows, claim)
    found += evidence(rows, claim["scenario"], claim["model"]) + digit_ceiling(rows, claim)
    found += audit(report_audit or {}, claim)
    return found or ["no measured mechanism among the fixed checks (agreement, training, learning speed, top-k "
                     "positions, background, texture, pipeline, collapse, pixel evidence, digit ceiling, audit): "
                     "unexplained"]

"""``captum-topgap sweep``: λ and the ReFF variant, or Top-GAP's (k, λ), chosen on a validation split, never
on the test.

Each candidate — ``METHOD[:VARIANT[:λ[:LAYERS]]]``, e.g. ``reff:contrastive:100:layer1,layer2``,
``reff:contrastive:100:stem`` (the stem and the four stages of any backbone,
:func:`~captum_topgap.train.losses.stem_reff_layers`) or ``rrr::10`` — is trained for each seed in the
demo's spurious scenario (the same images, budget and optimiser as :mod:`captum_topgap.app.demo`) and scored
on its validation split: other MNIST digits, rendered like the test split ((p, q) = (1, 1): random background
and digit texture); ``--images`` / ``--epochs`` change the training budget, itself a candidate dimension
(each row records its ``images`` and ``epochs``). Per candidate and seed: validation accuracy, the rate at
which predictions follow the background, the in-distribution validation accuracy (the same digits rendered
like the training split: what the regulariser may cost where the training data are), the share of the ERF's
input-gradient mass on the digit over the first ``explain_images`` validation images (where the evidence is in
the pixels), and the collapse diagnostic of the last epoch (on the first training images). :func:`choose`
picks the candidate with the best mean validation accuracy among those whose regularised layers never
collapsed and whose in-distribution validation accuracy is within 2 points of the baseline's.

``--scenario robustness`` sweeps Top-GAP's ``topgap:K:λ`` (and ``baseline``) in the demo's robustness
scenario (32 px, PreAct ResNet-18s) and scores each by validation accuracy and PGD-20 at ε = 8/255 on the
first ``audit_images`` validation images — the poster's measure; :func:`choose_robust` picks the best mean
PGD-20 among the candidates within 2 points of the baseline's validation accuracy. The audit then runs on the
test split only (the demo).

Example:
    >>> spec = parse_candidate("reff:contrastive:100:layer1,layer2")
    >>> spec.label, spec.architecture, spec.method, spec.variant, spec.weight, spec.layers
    ('reff contrastive λ=100 (layer1,layer2)', 'resnet18', 'reff', 'contrastive', 100.0, ('layer1', 'layer2'))
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captum_topgap.app.demo import DemoConfig, materialise, render, scenario_data, train_model
from captum_topgap.app.scenarios import ModelSpec, TexturedData, scenario
from captum_topgap.data import collate
from captum_topgap.evaluate.diagnostics import COLLAPSE_THRESHOLD, follows_background_rate
from captum_topgap.evaluate.heatmaps import erf_scores
from captum_topgap.evaluate.metrics import predict
from captum_topgap.evaluate.robustness import robust_accuracy
from captum_topgap.train.losses import VARIANTS


def parse_candidate(text: str, scenario: str = "spurious") -> ModelSpec:
    """``METHOD[:VARIANT[:λ[:LAYERS]]]`` -> the :class:`~captum_topgap.app.demo.ModelSpec` of a resnet18; in the
    robustness scenario ``baseline`` or ``topgap:K:λ`` -> a (Top-GAP) PreAct ResNet-18.

    Example:
        >>> parse_candidate("topgap:0.08:1", "robustness").k, parse_candidate("topgap:0.08:1", "robustness").weight
        (0.08, 1.0)
    """
    if scenario == "robustness":
        return robust_candidate(text)
    method, variant, weight, layers = [*text.split(":"), "", "", ""][:4]
    if method not in ("baseline", "reff", "rrr"):
        raise ValueError(f"candidate {text!r}: METHOD must be baseline, reff or rrr (METHOD[:VARIANT[:λ[:LAYERS]]]).")
    if variant and (method != "reff" or variant not in VARIANTS):
        raise ValueError(f"candidate {text!r}: VARIANT is a ReFF variant, one of {sorted(VARIANTS)}.")
    try:
        lam = float(weight) if weight else None
    except ValueError:
        raise ValueError(f"candidate {text!r}: λ must be a number, got {weight!r}.") from None
    stem = layers == "stem"
    if stem and method != "reff":
        raise ValueError(f"candidate {text!r}: LAYERS 'stem' (the stem and the four stages) is a ReFF option.")
    names = tuple(layers.split(",")) if layers and not stem else None
    label = " ".join(filter(None, [method, variant, f"λ={lam:g}" if lam is not None else "",
                                   f"({layers})" if layers else ""]))
    return ModelSpec(text, label, "resnet18", method, variant or None, lam, names, stem=stem)


def robust_candidate(text: str) -> ModelSpec:
    """``baseline`` or ``topgap:K:λ`` (K positions ≥ 1 or a share in (0, 1) of the CAM's) of the robustness
    scenario.
    """
    parts = text.split(":")
    robustness = scenario("robustness")
    if parts == ["baseline"]:
        return robustness.models[0]
    try:
        k, lam = float(parts[1]), float(parts[2])
        if parts[0] != "topgap" or len(parts) != 3 or k <= 0 or lam < 0:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"candidate {text!r}: in the robustness scenario use 'baseline' or 'topgap:K:λ' with K > 0 "
                         "(positions, or a share below 1) and λ ≥ 0, e.g. topgap:0.08:1.") from None
    spec = robustness.models[1]
    return ModelSpec(text, f"{spec.label} k={k:g} λ={lam:g}", spec.architecture, "topgap", weight=lam,
                     k=int(k) if k >= 1 else k)


def sweep(candidates: Sequence[ModelSpec], config: DemoConfig, out: str | Path,
          progress: bool = True, scenario_name: str = "spurious") -> list[dict[str, Any]]:
    """Train every candidate for every seed of ``config`` and score it on the (shifted) validation split."""
    spec = scenario(scenario_name)
    data = scenario_data(spec, config)
    val = collate(data["val"])
    budget = config.budget(spec)
    if scenario_name == "spurious" and isinstance(spec.data, TexturedData):
        (p, q), size = spec.data.train, config.image_size(spec)
        in_distribution = collate(materialise(render("val", p, q, size, budget.val_images)))
    rows = []
    images, epochs = budget.images, budget.epochs
    for candidate in candidates:
        for seed in budget.seeds:
            if progress:
                print(f"{candidate.label} / seed {seed}")
            folder = Path(out) / candidate.name.replace(":", "_").replace(",", "+") / f"seed{seed}"
            trained = train_model(candidate, spec, data, config, seed, folder, progress)
            predictions = predict(trained.model, val.images)
            if scenario_name == "robustness":
                attacked = slice(0, budget.audit_images)
                rows.append({"candidate": candidate.name, "label": candidate.label, "seed": seed, "images": images,
                             "epochs": epochs, "val_accuracy": float((predictions == val.labels).float().mean()),
                             "val_pgd20": robust_accuracy(trained.model, val.images[attacked], val.labels[attacked],
                                                          "pgd20"),
                             "train_seconds": trained.seconds})
                continue
            last = trained.history[-1]
            diagnostic = last.get("diagnostic", {})
            rows.append({
                "candidate": candidate.name, "label": candidate.label, "seed": seed, "images": images, "epochs": epochs,
                "val_accuracy": float((predictions == val.labels).float().mean()),
                "val_follows_background": follows_background_rate(
                    predictions, val.labels, data["val_backgrounds"], data["n_backgrounds"], 10),
                "val_in_distribution_accuracy": float(
                    (predict(trained.model, in_distribution.images) == in_distribution.labels).float().mean()),
                "val_erf_digit_share": 1.0 - erf_scores(trained.model, data["val"][:budget.explain_images], limit=None,
                                                        progress=False)["background_share"],
                "collapsed": sorted({name for record in trained.history for name in record.get("collapsed", [])}),
                "positive_fraction": {k: v["positive_fraction"] for k, v in diagnostic.items()},
                "in_mask_share": {k: v["in_mask_share"] for k, v in diagnostic.items()},
                "train_seconds": trained.seconds,
            })
    return rows


def choose(rows: list[dict[str, Any]], margin: float = 0.02) -> dict[str, Any]:
    """The candidate other than the baseline with the best mean shifted validation accuracy among those that never
    collapsed and keep the baseline's in-distribution accuracy — a mean in-distribution validation accuracy at
    most ``margin`` below the baseline's, the demo's in-distribution claim applied where selection is allowed.
    When none keeps it, the best that never collapsed, marked ``keeps_in_distribution: False``; without a
    baseline among the rows nothing is held, and it is ``None``.

    Example:
        >>> rows = [{"candidate": name, "val_accuracy": shifted, "val_in_distribution_accuracy": kept, "collapsed": []}
        ...         for name, shifted, kept in [("baseline", 0.1, 1.0), ("a", 0.4, 0.9), ("b", 0.3, 0.99)]]
        >>> choose(rows)
        {'candidate': 'b', 'val_accuracy': 0.3, 'val_in_distribution_accuracy': 0.99, 'keeps_in_distribution': True}
    """
    means: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        if not row["collapsed"]:
            entry = means.setdefault(row["candidate"], {"val_accuracy": [], "val_in_distribution_accuracy": []})
            for key, values in entry.items():
                values.append(row[key])
    if not means:
        raise ValueError(f"every candidate collapsed (positive fraction < {COLLAPSE_THRESHOLD}); widen the sweep.")
    mean = {name: {key: statistics.fmean(values) for key, values in entry.items()} for name, entry in means.items()}
    baseline = mean.pop("baseline", None)
    if not mean:
        raise ValueError("only the baseline was swept; add the candidates to choose between (--candidate).")
    floor = baseline["val_in_distribution_accuracy"] - margin if baseline else -1.0
    kept = {name: m for name, m in mean.items() if m["val_in_distribution_accuracy"] >= floor}
    pool = kept or mean
    name = max(pool, key=lambda key: pool[key]["val_accuracy"])
    return {"candidate": name, **pool[name], "keeps_in_distribution": bool(kept) if baseline else None}


def choose_robust(rows: list[dict[str, Any]], margin: float = 0.02) -> dict[str, Any]:
    """The Top-GAP candidate with the best mean validation PGD-20 among those whose mean validation accuracy is
    at most ``margin`` below the baseline's (all candidates when no baseline was swept).

    Example:
        >>> rows = [{"candidate": "baseline", "val_accuracy": 0.9, "val_pgd20": 0.1},
        ...         {"candidate": "topgap:0.02:1", "val_accuracy": 0.8, "val_pgd20": 0.6},
        ...         {"candidate": "topgap:0.25:1", "val_accuracy": 0.89, "val_pgd20": 0.4}]
        >>> choose_robust(rows)
        {'candidate': 'topgap:0.25:1', 'val_accuracy': 0.89, 'val_pgd20': 0.4}
    """
    means: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        entry = means.setdefault(row["candidate"], {"val_accuracy": [], "val_pgd20": []})
        entry["val_accuracy"].append(row["val_accuracy"])
        entry["val_pgd20"].append(row["val_pgd20"])
    mean = {name: {key: statistics.fmean(values) for key, values in entry.items()} for name, entry in means.items()}
    floor = mean["baseline"]["val_accuracy"] - margin if "baseline" in mean else -1.0
    kept = {name: m for name, m in mean.items() if name != "baseline" and m["val_accuracy"] >= floor}
    if not kept:
        raise ValueError(f"no Top-GAP candidate is within {margin:g} of the baseline's validation accuracy; widen the "
                         "sweep.")
    name = max(kept, key=lambda key: kept[key]["val_pgd20"])
    return {"candidate": name, **kept[name]}

"""``captum-topgap sweep``: λ and the ReFF variant chosen on a shifted validation split, never on the test.

Each candidate — ``METHOD[:VARIANT[:λ[:LAYERS]]]``, e.g. ``reff:contrastive:100:layer1,layer2`` or
``rrr::10`` — is trained for each seed in the demo's spurious scenario (the same images, budget and
optimiser as :mod:`captum_topgap.app.demo`) and scored on its validation split: other MNIST digits, rendered
like the test split ((p, q) = (1, 1): random background and digit texture). Per candidate and seed:
validation accuracy, the rate at which predictions follow the background, and the collapse diagnostic of
the last epoch (on the first training images). :func:`choose` picks the candidate with the best mean
validation accuracy among those whose regularised layers never collapsed.

Example:
    >>> parse_candidate("reff:contrastive:100:layer1,layer2")
    ModelSpec(name='reff:contrastive:100:layer1,layer2', label='reff contrastive λ=100 (layer1,layer2)', \
architecture='resnet18', method='reff', variant='contrastive', weight=100.0, layers=('layer1', 'layer2'), \
swap_background=False)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captum_topgap.app.demo import SCENARIOS, DemoConfig, ModelSpec, scenario_data, train_model
from captum_topgap.data import collate
from captum_topgap.evaluate.diagnostics import COLLAPSE_THRESHOLD, follows_background_rate
from captum_topgap.evaluate.metrics import predict
from captum_topgap.train.losses import VARIANTS
from captum_topgap.train.objectives import METHODS


def parse_candidate(text: str) -> ModelSpec:
    """``METHOD[:VARIANT[:λ[:LAYERS]]]`` -> the :class:`~captum_topgap.app.demo.ModelSpec` of a resnet18."""
    method, variant, weight, layers = [*text.split(":"), "", "", ""][:4]
    if method not in METHODS or method == "topgap":
        raise ValueError(f"candidate {text!r}: METHOD must be baseline, reff or rrr (METHOD[:VARIANT[:λ[:LAYERS]]]).")
    if variant and (method != "reff" or variant not in VARIANTS):
        raise ValueError(f"candidate {text!r}: VARIANT is a ReFF variant, one of {sorted(VARIANTS)}.")
    try:
        lam = float(weight) if weight else None
    except ValueError:
        raise ValueError(f"candidate {text!r}: λ must be a number, got {weight!r}.") from None
    names = tuple(layers.split(",")) if layers else None
    label = " ".join(filter(None, [method, variant, f"λ={lam:g}" if lam is not None else "",
                                   f"({layers})" if layers else ""]))
    return ModelSpec(text, label, "resnet18", method, variant or None, lam, names)


def sweep(candidates: Sequence[ModelSpec], config: DemoConfig, out: str | Path,
          progress: bool = True) -> list[dict[str, Any]]:
    """Train every candidate for every seed of ``config`` and score it on the shifted validation split."""
    scenario = next(s for s in SCENARIOS if s.name == "spurious")
    data = scenario_data(scenario, config)
    val = collate(data["val"])
    rows = []
    for spec in candidates:
        for seed in config.seeds:
            if progress:
                print(f"{spec.label} / seed {seed}")
            folder = Path(out) / spec.name.replace(":", "_").replace(",", "+") / f"seed{seed}"
            trained = train_model(spec, scenario, data, config, seed, folder, progress)
            predictions = predict(trained.model, val.images)
            last = trained.history[-1]
            diagnostic = last.get("diagnostic", {})
            rows.append({
                "candidate": spec.name, "label": spec.label, "seed": seed,
                "val_accuracy": float((predictions == val.labels).float().mean()),
                "val_follows_background": follows_background_rate(
                    predictions, val.labels, data["val_backgrounds"], data["n_backgrounds"], 10),
                "collapsed": sorted({name for record in trained.history for name in record.get("collapsed", [])}),
                "positive_fraction": {k: v["positive_fraction"] for k, v in diagnostic.items()},
                "in_mask_share": {k: v["in_mask_share"] for k, v in diagnostic.items()},
                "train_seconds": trained.seconds,
            })
    return rows


def choose(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The candidate with the best mean validation accuracy among those that never collapsed, with its mean.

    Example:
        >>> rows = [{"candidate": "a", "val_accuracy": 0.3, "collapsed": ["layer4"]},
        ...         {"candidate": "b", "val_accuracy": 0.2, "collapsed": []}]
        >>> choose(rows)
        {'candidate': 'b', 'val_accuracy': 0.2}
    """
    means: dict[str, list[float]] = {}
    for row in rows:
        if not row["collapsed"]:
            means.setdefault(row["candidate"], []).append(row["val_accuracy"])
    if not means:
        raise ValueError(f"every candidate collapsed (positive fraction < {COLLAPSE_THRESHOLD}); widen the sweep.")
    name = max(means, key=lambda key: statistics.fmean(means[key]))
    return {"candidate": name, "val_accuracy": statistics.fmean(means[name])}

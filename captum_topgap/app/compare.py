"""``captum-topgap compare``: the rows of :func:`captum_topgap.evaluate.compare.compare` as a report.

``run_compare`` takes a trained model (or trains a baseline ResNet-18 on Textured MNIST where the object
is the cue, p = 1, q = 0: the background is random, so a map that points at the digit is right), scores
every method on the same test images and writes ``results.json`` (``methods``: one row per method;
``config``), ``index.html`` (the sortable table, the Pareto plot of quality against cost, a heat-map grid
per method and the randomisation cascade) and the PNG figures.

Example:
    >>> pareto_front([(1.0, 0.5), (2.0, 0.4), (3.0, 0.9)])
    [True, False, True]
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from captum_topgap.app.plots import new_figure, save_figure, save_overlays
from captum_topgap.app.report import embedded_image, html_table
from captum_topgap.data import TexturedMNIST, collate
from captum_topgap.data.transforms import Samples
from captum_topgap.evaluate.compare import COLUMNS, FLAG_SIMILARITY, compare, heatmaps_of
from captum_topgap.evaluate.metrics import predict
from captum_topgap.registry import get_method
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.objectives import CrossEntropy
from captum_topgap.train.workflows import trainable_model

DEFAULT_METHODS = ("gradcam", "gradcam++", "layercam", "recipro_cam", "augmented_gradcam", "saliency",
                   "input_x_gradient", "integrated_gradients", "guided_backprop")
"""The methods of a plain ``captum-topgap compare``: CAMs of grad-cam and this project, and gradient methods of
Captum — guided backprop among them, the method "Sanity Checks for Saliency Maps" flags. Perturbation methods
(``rise``, ``scorecam``, ``occlusion``) cost hundreds of forwards per map: add them by name."""
LOWER_IS_BETTER = {"deletion_auc", "infidelity", "sensitivity", "randomization_similarity", "seconds_per_image",
                   "peak_memory_mb"}


@dataclass(frozen=True)
class CompareConfig:
    """Budget of a run: images scored, steps of the deletion/insertion curves, Captum's perturbation samples,
    images of the randomisation cascade, and — when no model is given — the training of the baseline.
    """

    size: int = 48
    images: int = 64
    steps: int = 16
    n_perturb_samples: int = 8
    sanity_images: int = 16
    train_images: int = 3000
    epochs: int = 5
    seed: int = 0

    @classmethod
    def quick(cls) -> CompareConfig:
        """The ``--quick`` budget: fewer images, curve steps and perturbation samples; a shorter training."""
        return cls(images=32, steps=10, n_perturb_samples=4, sanity_images=8, train_images=1500, epochs=4)


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """Which (cost, quality) points no other point beats in both (lower cost and higher quality).

    Example:
        >>> pareto_front([(1.0, 1.0), (1.0, 1.0)])
        [True, True]
    """
    return [not any(c <= cost and q >= quality and (c, q) != (cost, quality) for c, q in points)
            for cost, quality in points]


def baseline_model(config: CompareConfig, out: Path, progress: bool) -> nn.Module:
    """A ResNet-18 trained on Textured MNIST where the object is the cue (p = 1, q = 0), saved in ``out``."""
    torch.manual_seed(config.seed)
    model, kwargs = trainable_model("resnet18", 10)
    train_data = TexturedMNIST("train", p=1.0, q=0.0, size=config.size, limit=config.train_images, seed=config.seed)
    val_data = TexturedMNIST("val", p=1.0, q=0.0, size=config.size, limit=300, seed=config.seed)
    metadata = {"model": "resnet18", "model_kwargs": kwargs, "method": "baseline", "data": "textured-mnist",
                "p": 1.0, "q": 0.0, "size": config.size}
    train(model, CrossEntropy(), train_data, val_data,
          TrainConfig(epochs=config.epochs, batch_size=32, lr=1e-3, optimizer="adam", seed=config.seed,
                      progress=progress), out, metadata=metadata)
    return model.eval()


def run_compare(out: str | Path, methods: list[str], model: nn.Module | None = None, data: Samples | None = None,
                config: CompareConfig | None = None, method_kwargs: dict[str, dict[str, Any]] | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Score ``methods`` on ``model`` (None: train the baseline) over ``data`` (None: the Textured MNIST test
    split, object scenario) and write the report into ``out``; returns what ``results.json`` holds.
    """
    config = config or CompareConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    trained = model is None
    model = baseline_model(config, out / "model", progress) if model is None else model
    data = TexturedMNIST("test", p=1.0, q=0.0, size=config.size, limit=config.images, seed=config.seed) \
        if data is None else data
    batch = collate([data[i] for i in range(min(config.images, len(data)))])
    if batch.masks is None:
        raise ValueError("`data` has no masks: compare scores localisation against ground-truth masks; use a "
                         "dataset with masks (textured-mnist, mask-folder, oxford-pet).")
    device = next(model.parameters()).device
    images, labels, masks = batch.images.to(device), batch.labels.to(device), batch.masks.to(device)
    rows = compare(model, images, labels, masks, methods, method_kwargs=method_kwargs, steps=config.steps,
                   n_perturb_samples=config.n_perturb_samples, sanity_images=config.sanity_images,
                   seed=config.seed, progress=progress)
    report = {"methods": [{"method": name, **row} for name, row in rows.items()],
              "config": {**asdict(config), "trained_in_run": trained,
                         "accuracy": float((predict(model, images) == labels).float().mean())},
              "seconds": time.perf_counter() - start}
    figures = save_compare_figures(report, model, images, labels, masks, methods, method_kwargs, out)
    (out / "results.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    write_compare_html(report, figures, out)
    return report


def save_compare_figures(report: dict[str, Any], model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                         masks: torch.Tensor, methods: list[str], method_kwargs: dict[str, dict[str, Any]] | None,
                         out: Path, shown: int = 6) -> dict[str, Path]:
    """The Pareto plot, the heat-map grid (first ``shown`` images × methods) and the randomisation cascade."""
    rows = report["methods"]
    figure, axes = new_figure(1, 2, figsize=(11.0, 4.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], (("insertion_minus_deletion", "insertion − deletion AUC"),
                                          ("iou", "mask IoU")), strict=True):
        points = [(row["seconds_per_image"], quality(row, key)) for row in rows]
        front = pareto_front(points)
        for row, (cost, value), best in zip(rows, points, front, strict=True):
            ax.scatter(cost, value, color="tab:red" if row["flagged"] else "tab:blue", marker="o" if best else "x")
            ax.annotate(row["method"], (cost, value), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (log)")
        ax.set_ylabel(title)
        ax.set_title(f"{title} against cost (o: Pareto front, red: flagged)", fontsize=9)
    figure.tight_layout()
    save_figure(figure, out / "pareto.png")
    heat = {}
    for name in methods:
        torch.manual_seed(0)
        explainer = get_method(name, model, **(method_kwargs or {}).get(name, {}))
        heat[name] = heatmaps_of(explainer, images[:shown], labels[:shown], shown).cpu()
    save_overlays(images[:shown].cpu(), heat, out / "maps.png", masks[:shown].cpu())
    figure, axes = new_figure(1, 1, figsize=(9.0, 4.2), squeeze=False)
    ax = axes[0, 0]
    for row in rows:
        cascade = row["randomization_cascade"]
        ax.plot(range(1, len(cascade) + 1), [step["spearman"] for step in cascade], marker=".",
                label=row["method"], linestyle="--" if row["flagged"] else "-")
    blocks = [step["block"] for step in rows[0]["randomization_cascade"]]
    ax.set_xticks(range(1, len(blocks) + 1), blocks, rotation=60, fontsize=7, ha="right")
    ax.axhline(FLAG_SIMILARITY, color="gray", linewidth=0.8)
    ax.set_ylabel("Spearman, trained vs randomised maps")
    ax.set_xlabel("blocks re-initialised, from the output down (cumulative)")
    ax.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    save_figure(figure, out / "randomization.png")
    return {"pareto": out / "pareto.png", "maps": out / "maps.png", "randomization": out / "randomization.png"}


def quality(row: dict[str, Any], key: str) -> float:
    """A row's value of ``key``; ``insertion_minus_deletion`` is insertion AUC − deletion AUC."""
    return row["insertion_auc"] - row["deletion_auc"] if key == "insertion_minus_deletion" else row[key]


SORT_SCRIPT = """<script>
document.querySelectorAll("th").forEach((th, column) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0];
  const ascending = th.dataset.order !== "asc";
  th.dataset.order = ascending ? "asc" : "desc";
  const value = row => { const text = row.cells[column].textContent; const x = parseFloat(text);
                         return isNaN(x) ? text : x; };
  [...body.rows].sort((a, b) => (value(a) > value(b) ? 1 : -1) * (ascending ? 1 : -1))
               .forEach(row => body.appendChild(row));
}));
</script>"""


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "flagged" if value else "passed"
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.3g}"


def write_compare_html(report: dict[str, Any], figures: dict[str, Path], out: Path) -> Path:
    """``out/index.html``: the table (click a header to sort), the figures, embedded."""
    header = ["method", *COLUMNS, "sanity"]
    rows = [[row["method"], *(_format(row[key]) for key in COLUMNS), _format(row["flagged"])]
            for row in report["methods"]]
    config = report["config"]
    arrows = ", ".join(f"{key} {'↓' if key in LOWER_IS_BETTER else '↑'}" for key in COLUMNS)
    flagged = [row["method"] for row in report["methods"] if row["flagged"]]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>captum-topgap compare</title>
<style>body{{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}td,th{{border:1px solid #bbb;padding:3px 6px}}
th{{cursor:pointer;background:#eee;max-width:80px;overflow-wrap:anywhere}}img{{max-width:100%}}</style></head><body>
<h1>captum-topgap compare</h1>
<p>{len(report['methods'])} methods on the same {config['images']} test images ({config['size']} px; model accuracy
on them {config['accuracy']:.3f}{', trained in this run on Textured MNIST with the object as the cue' if
config['trained_in_run'] else ''}). Deletion/insertion: {config['steps']} steps; Captum's infidelity and
sensitivity: {config['n_perturb_samples']} perturbation samples; randomisation cascade on {config['sanity_images']}
images. Localisation thresholds: iou at 0.5 of each map's maximum (fixed), pxap over every threshold 0, 0.01, …,
0.99, max_box_acc_v2 at the best threshold of each box IoU level 0.3, 0.5, 0.7 (Choe et al. 2020). Class
discrimination: 1 − the Pearson correlation of each image's maps for the model's top-1 and top-2
classes, averaged (0: the same map whatever the class). Better is: {html.escape(arrows)}. Click a column header to
sort.</p>
<p><b>Sanity check</b> (mean Spearman over the cascade ≥ {FLAG_SIMILARITY}): {html.escape(', '.join(flagged) or
'no method flagged')}. Total time {report['seconds'] / 60:.1f} min.</p>
{html_table(header, rows)}
{embedded_image(figures['pareto'], 'Pareto plot')}<p>Quality against cost; circles are on the Pareto front.</p>
{embedded_image(figures['maps'], 'heat-map grid')}<p>Heat-maps of the true class, digit mask outlined in white.</p>
{embedded_image(figures['randomization'], 'randomisation cascade')}<p>Cascading model randomisation (Adebayo et al.
2018): Spearman between the trained model's maps and the maps after re-initialising the blocks from the output
down; dashed: flagged.</p>
<p>Every number is in <a href="results.json">results.json</a>.</p>
{SORT_SCRIPT}
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path

"""``captum-topgap demo``: the seeds' claims in miniature on Textured MNIST, written up as an HTML report.

Protocol (one budget for all three models, one seed):

1. Train a baseline ResNet-18, a Top-GAP ResNet-18 (k = 1/16 of the CAM positions, λ = 0.01) and a
   ReFF ResNet-18 (every training mask annotated) on Textured MNIST with a spurious background
   (p = 0: the background texture gives the class away; q = 0).
2. Accuracy in distribution (p = 0 test split) and under the background shift (p = 1 test split).
3. On the in-distribution test images, where every model is accurate: mask IoU and energy pointing game
   of Grad-CAM, Recipro-CAM, Augmented Grad-CAM (and Top-GAP CAM for Top-GAP); ERF distance; PGD-20
   robust accuracy at eps = 8/255 on all pixels and on the background only.
4. ``DIR/results.json`` with every number, ``DIR/index.html`` with tables, figures and findings
   generated from the numbers.

Example:
    >>> DemoConfig.quick().size, DemoConfig().size
    (48, 64)
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from captum_topgap.data import TexturedMNIST, collate
from captum_topgap.evaluation import erf_scores, heatmap_scores
from captum_topgap.losses import CrossEntropy, ReFF, ReFFObjective, TopGAPObjective
from captum_topgap.plots import save_overlays
from captum_topgap.registry import get_method
from captum_topgap.robustness import evaluate_robustness
from captum_topgap.training import TrainConfig, accuracy, build_model, train

MODELS = {"baseline": "ResNet-18", "topgap": "Top-GAP ResNet-18", "reff": "ReFF ResNet-18"}
CAM_METHODS = ("gradcam", "recipro_cam", "augmented_gradcam")
METHOD_OPTIONS = {"augmented_gradcam": {"n_augmentations": 8, "solver": "primal_dual"}}


@dataclass(frozen=True)
class DemoConfig:
    """Budget of the demo; :meth:`quick` is the under-5-minutes preset for a 2-core CPU."""

    size: int = 64
    train_images: int = 3000
    test_images: int = 500
    epochs: int = 4
    explain_images: int = 200
    attack_images: int = 200
    k: float = 1 / 16
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> DemoConfig:
        """48 px (ResNet-18's last map is 2 × 2; at 32 px it would be 1 × 1), 800 training images, 3 epochs,
        64 images explained and attacked."""
        return cls(size=48, train_images=800, test_images=300, epochs=3, explain_images=64, attack_images=64,
                   seed=seed)


def _data(config: DemoConfig, split: str, p: float, limit: int) -> TexturedMNIST:
    return TexturedMNIST(split, p=p, q=0.0, size=config.size, limit=limit, seed=config.seed)


def train_models(config: DemoConfig, out: Path, progress: bool = True) -> tuple[dict[str, nn.Module], dict[str, float]]:
    """Train the baseline, Top-GAP and ReFF models with the same data, epochs and optimiser."""
    train_data = _data(config, "train", 0.0, config.train_images)
    val_data = _data(config, "val", 0.0, config.train_images // 10)
    models, seconds = {}, {}
    for name in MODELS:
        torch.manual_seed(config.seed)
        model = build_model("topgap_resnet18", num_classes=10, k=config.k) if name == "topgap" else \
            build_model("resnet18", num_classes=10)
        objective = ReFFObjective(ReFF(model)) if name == "reff" else \
            TopGAPObjective() if name == "topgap" else CrossEntropy()
        if progress:
            print(f"training {MODELS[name]} ({config.epochs} epochs, {len(train_data)} images)")
        start = time.perf_counter()
        train(model, objective, train_data, val_data, TrainConfig(epochs=config.epochs, seed=config.seed,
                                                                  progress=progress), out / "models" / name)
        models[name], seconds[name] = model.eval(), time.perf_counter() - start
    return models, seconds


def evaluate_models(models: dict[str, nn.Module], config: DemoConfig, progress: bool = True) -> dict[str, Any]:
    """Every number of the report, per model (see the module docstring for the protocol)."""
    in_distribution = _data(config, "test", 0.0, config.test_images)
    shifted = _data(config, "test", 1.0, config.test_images)
    attack_loader = DataLoader(Subset(in_distribution, range(min(config.attack_images, len(in_distribution)))),
                               batch_size=64, collate_fn=collate)
    results = {}
    for name, model in models.items():
        methods = (("topgap_cam",) if name == "topgap" else ()) + CAM_METHODS
        results[name] = {
            "accuracy": {"in_distribution": accuracy(model, in_distribution), "shifted": accuracy(model, shifted)},
            "heatmaps": heatmap_scores(model, methods, in_distribution, limit=config.explain_images,
                                       method_kwargs=METHOD_OPTIONS, progress=progress),
            "erf": erf_scores(model, in_distribution, limit=config.explain_images, progress=progress),
            "robustness": {region: evaluate_robustness(model, attack_loader, ["pgd20"], region=region,
                                                       seed=config.seed, progress=progress)
                           for region in ("all", "background")},
        }
    return results


def save_figures(models: dict[str, nn.Module], config: DemoConfig, out: Path) -> dict[str, Path]:
    """Heat-map grid (rows = images, columns = model × method, mask outlined) and ERF maps side by side."""
    batch = collate([_data(config, "test", 0.0, 4)[i] for i in range(4)])
    x, y = batch.images, batch.labels
    maps = {}
    for name, model in models.items():
        methods = ("topgap_cam",) if name == "topgap" else ()
        for method in methods + CAM_METHODS:
            explainer = get_method(method, model, **METHOD_OPTIONS.get(method, {}))
            maps[f"{name}: {method}"] = explainer.attribute(x, target=y).detach()
    erf = {MODELS[name]: get_method("erf", model).attribute(x, target=y).detach() for name, model in models.items()}
    figures = {"heatmaps": out / "heatmaps.png", "erf": out / "erf.png"}
    save_overlays(x, maps, figures["heatmaps"], batch.masks)
    save_overlays(x, erf, figures["erf"], batch.masks)
    return figures


def findings(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each seed claim checked against the numbers: ``{"claim", "held", "evidence"}``.

    Example:
        >>> row = {"accuracy": {"in_distribution": 0.9, "shifted": 0.1}, "erf": {"background_share": 0.5},
        ...        "heatmaps": {"gradcam": {"iou": 0.1}, "augmented_gradcam": {"iou": 0.2}, "topgap_cam": {"iou": 0.3}},
        ...        "robustness": {"all": {"pgd20": 0.2}, "background": {"pgd20": 0.4}}}
        >>> [f["held"] for f in findings({"baseline": row, "topgap": row, "reff": row})]
        [True, True, False, False, True, False, True]
    """
    base, topgap, reff = results["baseline"], results["topgap"], results["reff"]

    def claim(text: str, held: bool, evidence: str) -> dict[str, Any]:
        return {"claim": text, "held": bool(held), "evidence": evidence}

    accuracy_gap = topgap["accuracy"]["in_distribution"] - base["accuracy"]["in_distribution"]
    return [
        claim("Top-GAP keeps the accuracy of the baseline (within 2 points)", accuracy_gap >= -0.02,
              f"in-distribution accuracy {topgap['accuracy']['in_distribution']:.3f} vs "
              f"{base['accuracy']['in_distribution']:.3f}"),
        claim("Top-GAP's class maps cover the object better than the baseline's Grad-CAM",
              topgap["heatmaps"]["topgap_cam"]["iou"] > base["heatmaps"]["gradcam"]["iou"],
              f"mask IoU {topgap['heatmaps']['topgap_cam']['iou']:.3f} vs {base['heatmaps']['gradcam']['iou']:.3f}"),
        claim("Top-GAP's effective receptive field puts less mass on the background",
              topgap["erf"]["background_share"] < base["erf"]["background_share"],
              f"ERF background share {topgap['erf']['background_share']:.3f} vs "
              f"{base['erf']['background_share']:.3f}"),
        claim("ReFF generalises better when the background stops predicting the class (by more than 2 points)",
              reff["accuracy"]["shifted"] > base["accuracy"]["shifted"] + 0.02,
              f"shifted accuracy {reff['accuracy']['shifted']:.3f} vs {base['accuracy']['shifted']:.3f} "
              "(chance 0.100)"),
        claim("Augmented Grad-CAM localises the object better than Grad-CAM (same baseline model)",
              base["heatmaps"]["augmented_gradcam"]["iou"] > base["heatmaps"]["gradcam"]["iou"],
              f"mask IoU {base['heatmaps']['augmented_gradcam']['iou']:.3f} vs "
              f"{base['heatmaps']['gradcam']['iou']:.3f}"),
        claim("Top-GAP is more robust to PGD-20 than the baseline",
              topgap["robustness"]["all"]["pgd20"] > base["robustness"]["all"]["pgd20"],
              f"robust accuracy {topgap['robustness']['all']['pgd20']:.3f} vs "
              f"{base['robustness']['all']['pgd20']:.3f}"),
        claim("For Top-GAP the background is less susceptible to attacks than the whole image",
              topgap["robustness"]["background"]["pgd20"] > topgap["robustness"]["all"]["pgd20"],
              f"PGD-20 on the background only {topgap['robustness']['background']['pgd20']:.3f} vs all pixels "
              f"{topgap['robustness']['all']['pgd20']:.3f}"),
    ]


def observations(results: dict[str, Any]) -> list[str]:
    """Remarks the numbers force, beyond the claims: heat-maps that are zero everywhere, models at chance.

    Example:
        >>> row = {"accuracy": {"shifted": 0.1}, "heatmaps": {"gradcam": {"iou": 0.0, "energy_pointing_game": 0.0}}}
        >>> observations({"reff": row})[0][:41]
        "ReFF ResNet-18's gradcam maps are zero on"
    """
    notes = []
    for name, row in results.items():
        for method, scores in row["heatmaps"].items():
            if scores["iou"] == 0 and scores["energy_pointing_game"] == 0:
                notes.append(f"{MODELS[name]}'s {method} maps are zero on every image: the layer's positive "
                             "evidence was switched off rather than moved onto the object.")
        if row["accuracy"]["shifted"] <= 0.12:
            notes.append(f"{MODELS[name]} is at chance under the background shift "
                         f"({row['accuracy']['shifted']:.3f}): it learnt the background, not the digit.")
    return notes


def summary_table(results: dict[str, Any]) -> str:
    """The terminal summary: one row per model.

    Example:
        >>> row = {"accuracy": {"in_distribution": 0.9, "shifted": 0.1}, "erf": {"background_share": 0.5},
        ...        "heatmaps": {"gradcam": {"iou": 0.1}}, "robustness": {"all": {"pgd20": 0.2},
        ...        "background": {"pgd20": 0.4}}}
        >>> print(summary_table({"baseline": row}).splitlines()[2])
        ResNet-18             0.900    0.100      0.100      0.500   0.200     0.400
    """
    lines = [f"{'model':20s} {'acc':>6s} {'shifted':>8s} {'IoU(GC)':>10s} {'ERF bg':>10s} {'PGD-20':>7s} "
             f"{'PGD-20 bg':>9s}", "-" * 76]
    for name, row in results.items():
        lines.append(f"{MODELS[name]:20s} {row['accuracy']['in_distribution']:6.3f} {row['accuracy']['shifted']:8.3f} "
                     f"{row['heatmaps']['gradcam']['iou']:10.3f} {row['erf']['background_share']:10.3f} "
                     f"{row['robustness']['all']['pgd20']:7.3f} {row['robustness']['background']['pgd20']:9.3f}")
    return "\n".join(lines)


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(report: dict[str, Any], figures: dict[str, Path], path: Path) -> Path:
    """A self-contained page (figures embedded as data URIs) with the tables, figures and findings."""
    results, config = report["results"], report["config"]
    accuracy_rows = [[MODELS[n], f"{r['accuracy']['in_distribution']:.3f}", f"{r['accuracy']['shifted']:.3f}",
                      f"{report['train_seconds'][n]:.0f}"] for n, r in results.items()]
    heatmap_rows = [[MODELS[n], method, f"{s['iou']:.3f}", f"{s['iou_mean_thresholds']:.3f}",
                     f"{s['energy_pointing_game']:.3f}"]
                    for n, r in results.items() for method, s in r["heatmaps"].items()]
    erf_rows = [[MODELS[n], f"{r['erf']['background_share']:.3f}", f"{r['erf']['distance']:.3f}"]
                for n, r in results.items()]
    robust_rows = [[MODELS[n], f"{r['robustness']['all']['clean']:.3f}", f"{r['robustness']['all']['pgd20']:.3f}",
                    f"{r['robustness']['background']['pgd20']:.3f}"] for n, r in results.items()]
    items = "".join(f"<li class=\"{'held' if f['held'] else 'not'}\"><b>{'held' if f['held'] else 'did not hold'}"
                    f"</b>: {html.escape(f['claim'])} — {html.escape(f['evidence'])}</li>" for f in report["findings"])
    held = sum(f["held"] for f in report["findings"])
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in report["observations"])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>captum-topgap demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}li.held b{{color:#176317}}
li.not b{{color:#a11}}</style></head><body>
<h1>captum-topgap demo</h1>
<p>Textured MNIST at {config['size']} px: {config['train_images']} training images with a spurious background
(p = 0, q = 0), {config['epochs']} epochs per model, seed {config['seed']}. Accuracy in distribution (p = 0) and
under the background shift (p = 1) on {config['test_images']} test images each; explanations on
{config['explain_images']} and PGD-20 (eps = 8/255) on {config['attack_images']} in-distribution test images.</p>
<h2>What this shows</h2>
<p>{held} of {len(report['findings'])} claims of the seeds held at this budget (one seed: a hint, not evidence).</p>
<ul>{items}</ul>
<p>Also visible in the numbers:</p><ul>{notes}</ul>
<h2>Accuracy</h2>{_table(["model", "in distribution", "background shift", "training s"], accuracy_rows)}
<h2>Heat-maps against the ground-truth masks</h2>
{_table(["model", "method", "IoU@0.5", "IoU mean over thresholds", "energy pointing game"], heatmap_rows)}
{_image(figures["heatmaps"], "heat-maps: rows are test images, columns model and method, mask outlined")}
<p>Rows: test images; columns: model and method; white outline: the digit's mask.</p>
<h2>Effective receptive fields</h2>{_table(["model", "ERF mass on background", "ERF distance"], erf_rows)}
{_image(figures["erf"], "ERF of the true class per model, mask outlined")}
<p>ERF of the true-class logit (Σ|∂y/∂x|) per model, side by side; white outline: the digit's mask.</p>
<h2>Robust accuracy (PGD-20, eps = 8/255, Foolbox)</h2>
{_table(["model", "clean", "PGD-20 all pixels", "PGD-20 background only"], robust_rows)}
<p>All numbers are in <a href="results.json">results.json</a>.</p>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def run_demo(out: str | Path = "demo", quick: bool = False, seed: int = 0, progress: bool = True,
             config: DemoConfig | None = None) -> dict[str, Any]:
    """Train, evaluate, draw and write ``out/index.html`` and ``out/results.json``; returns the report dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = config or replace(DemoConfig.quick() if quick else DemoConfig(), seed=seed)
    start = time.perf_counter()
    models, seconds = train_models(config, out, progress)
    results = evaluate_models(models, config, progress)
    figures = save_figures(models, config, out)
    report = {"config": asdict(config), "train_seconds": seconds, "results": results,
              "findings": findings(results), "observations": observations(results),
              "seconds": time.perf_counter() - start}
    (out / "results.json").write_text(json.dumps(report, indent=1))
    write_html(report, figures, out / "index.html")
    return report

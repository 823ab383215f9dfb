"""The demo's report: figures, one self-contained HTML page and the terminal summary.

Input is the report dict of :func:`captum_topgap.app.demo.run_demo` (the same data as ``results.json``):
``claims`` (each with values per seed and a verdict) and ``models`` (per model and seed: measures,
training history, checkpoint). Per scenario the page has the claims table (the paper's figure, ours as
mean ± sd, the criterion, the verdict), the measures of every model and the scenario's further tables, a
heat-map grid and, for the spurious scenario, the collapse diagnostic per epoch of each ReFF / RRR variant and
the Perception Visualization panels of the models a decoder was trained over.

Example:
    >>> cell({"values": [0.5, 0.7], "reference_values": [0.1, 0.2]})
    '0.600 ± 0.141 vs 0.150 ± 0.071'
"""

from __future__ import annotations

import base64
import html
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from captum_topgap.app.findings import verdict_reasons
from captum_topgap.app.plots import save_audit_curves, save_diagnostic_curves, save_overlays, save_perception_panels
from captum_topgap.data import collate
from captum_topgap.evaluate.audit import cascade_columns
from captum_topgap.evaluate.claims import mean_sd
from captum_topgap.registry import get_method


def cell(claim: dict[str, Any]) -> str:
    """"mean ± sd" of the claimed model, and "vs mean ± sd" of the reference when there is one."""
    text = "{:.3f} ± {:.3f}".format(*mean_sd(claim["values"]))
    if claim.get("reference_values") is not None:
        text += " vs {:.3f} ± {:.3f}".format(*mean_sd(claim["reference_values"]))
    return text


def model_table(models: list[dict[str, Any]], scenario: str, columns: Sequence[Sequence[str]],
                seconds: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows (mean ± sd over seeds) of a scenario's measures: its ``columns`` (key, title) that some
    model has, one row per model that has one of them, and (``seconds``) the model's training time; a ``count/``
    measure (a number of images) with one decimal.

    Example:
        >>> rows = [{"scenario": "s", "name": "a", "label": "A", "train_seconds": 2.0, "measures": {"m": 0.5}},
        ...         {"scenario": "s", "name": "b", "label": "B", "train_seconds": 3.0, "measures": {"count/n": 7.0}}]
        >>> model_table(rows, "s", [("m", "M"), ("n", "N")])
        (['model', 'M', 'training s'], [['A', '0.500 ± 0.000', '2']])
        >>> model_table(rows, "s", [("count/n", "images")], seconds=False)
        (['model', 'images'], [['B', '7.0 ± 0.0']])
    """
    present = [(key, title) for key, title in columns
               if any(key in row["measures"] for row in models if row["scenario"] == scenario)]
    names: dict[str, str] = {}
    for row in models:
        if row["scenario"] == scenario:
            names.setdefault(row["name"], row["label"])
    rows = []
    for name, label in names.items():
        runs = [row for row in models if row["scenario"] == scenario and row["name"] == name]
        if not any(key in row["measures"] for row in runs for key, _ in present):
            continue
        cells = []
        for key, _ in present:
            values = [row["measures"][key] for row in runs if key in row["measures"]]
            style = "{:.1f} ± {:.1f}" if key.startswith("count/") else "{:.3f} ± {:.3f}"
            cells.append(style.format(*mean_sd(values)) if values else "–")
        took = [f"{statistics.fmean(row['train_seconds'] for row in runs):.0f}"] if seconds else []
        rows.append([label, *cells, *took])
    return ["model", *[title for _, title in present], *(["training s"] if seconds else [])], rows


def save_figures(rows: list[dict[str, Any]], kept: dict[str, Any], out: Path,
                 audit: dict[str, dict[str, Any]] | None = None) -> dict[str, Path]:
    """Per scenario, by its measures: for ``localisation`` the heat-map grid of every model's methods and the
    ERF maps (first seed, four test images, mask outlined), for ``shift`` the Grad-CAM grid and the diagnostic
    curves of the regularised models, for ``perception`` a row per model of input | Grad-CAM | reconstruction |
    PV for a correct and a wrong prediction (first seed), for ``annotator`` the pseudo-annotations at each n and
    the ABN models' attention maps; for every audited scenario the audit's curves.

    ``kept[scenario]`` holds the rendered ``data``, the first seed's ``models``, their ``specs``, the methods'
    ``options``, the scenario's ``measures``, for ``shift`` the ``layer`` whose Grad-CAM is drawn and for
    ``perception`` the ``panels`` of each model (by label).
    """
    figures: dict[str, Path] = {}
    for name, scene in kept.items():
        if "localisation" in scene["measures"] or "thresholds" in scene["measures"]:
            heatmap_grid(name, scene, out, figures)
        if "localisation" in scene["measures"]:
            erf_figure(name, scene, out, figures)
        if "shift" in scene["measures"]:
            shift_figures(name, rows, scene, out, figures)
        if "annotator" in scene["measures"]:
            annotation_figures(name, scene, out, figures)
        if scene.get("panels"):
            figures[f"{name}_perception"] = save_perception_panels(scene["panels"], out / f"{name}_perception.png")
    for name, models in (audit or {}).items():
        figures[f"{name}_audit"] = save_audit_curves(models, out / f"{name}_audit.png")
    return figures


def first_four(scene: dict[str, Any]) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The first four test images of a scene (the figures' columns): the batch, its images and labels on the
    models' device.
    """
    batch = collate(scene["data"]["test"][:4])
    device = batch_device(scene["models"])
    return batch, batch.images.to(device), batch.labels.to(device)


def heatmap_grid(name: str, scene: dict[str, Any], out: Path, figures: dict[str, Path]) -> None:
    """A scenario's heat-map grid: each trained model's methods on four test images (first seed)."""
    batch, images, labels = first_four(scene)
    maps = {f"{spec.label}: {method}": get_method(method, scene["models"][spec.name],
                                                  **scene["options"].get(method, {}))
            .attribute(images, target=labels).detach().cpu()
            for spec in scene["specs"] if spec.name in scene["models"] for method in spec.methods}
    figures[f"{name}_heatmaps"] = out / f"{name}_heatmaps.png"
    save_overlays(batch.images, maps, figures[f"{name}_heatmaps"], batch.masks)


def erf_figure(name: str, scene: dict[str, Any], out: Path, figures: dict[str, Path]) -> None:
    """The ERF maps of a scenario's models (first seed, four test images)."""
    batch, images, labels = first_four(scene)
    erf = {f"{model_name}: ERF": get_method("erf", model).attribute(images, target=labels).detach().cpu()
           for model_name, model in scene["models"].items()}
    figures[f"{name}_erf"] = out / f"{name}_erf.png"
    save_overlays(batch.images, erf, figures[f"{name}_erf"], batch.masks)


def shift_figures(name: str, rows: list[dict[str, Any]], scene: dict[str, Any], out: Path,
                  figures: dict[str, Path]) -> None:
    """A shifted scenario's Grad-CAM grid and the diagnostic curves of its regularised models."""
    batch = collate(scene["data"]["in_distribution"][:4])
    device = batch_device(scene["models"])
    images, labels = batch.images.to(device), batch.labels.to(device)
    layers = scene["layers"]
    maps = {f"{model_name}: Grad-CAM {layers[model_name]}": get_method("gradcam", model, layers[model_name]).attribute(
        images, target=labels).detach().cpu() for model_name, model in scene["models"].items()}
    figures[f"{name}_heatmaps"] = out / f"{name}_heatmaps.png"
    save_overlays(batch.images, maps, figures[f"{name}_heatmaps"], batch.masks)
    histories: dict[str, list[list[dict]]] = {}
    for row in rows:
        if row["scenario"] == name and "diagnostic" in row["history"][0]:
            histories.setdefault(row["label"], []).append(row["history"])
    if histories:
        figures[f"{name}_diagnostic"] = save_diagnostic_curves(histories, out / f"{name}_diagnostic.png")


def annotation_figures(name: str, scene: dict[str, Any], out: Path, figures: dict[str, Path]) -> None:
    """The ReFF supplementary's Fig. 2 — the first seed's pseudo-annotations of four validation images at each n,
    the true mask outlined — and its Fig. 6: the attention maps M(x) of the ABN models on the same images.
    """
    batch = collate(scene["data"]["val"][:4])
    device = batch_device(scene["models"])
    images = batch.images.to(device)
    annotations = scene["data"].get("annotations", {})
    first = min((seed for _, seed in annotations), default=None)
    drawn = {f"pseudo-annotation, n = {n}": entry.annotator.annotate(images).detach().cpu()
             for (n, seed), entry in sorted(annotations.items()) if seed == first and entry.annotator is not None}
    if drawn:
        figures[f"{name}_annotations"] = out / f"{name}_annotations.png"
        save_overlays(batch.images, drawn, figures[f"{name}_annotations"], batch.masks)
    attention = {f"{spec.label}: attention M(x)": get_method("abn_attention", scene["models"][spec.name])
                 .attribute(images).detach().cpu() for spec in scene["specs"]
                 if spec.method == "abn" and spec.name in scene["models"]}
    if attention:
        figures[f"{name}_attention"] = out / f"{name}_attention.png"
        save_overlays(batch.images, attention, figures[f"{name}_attention"], batch.masks)


def batch_device(models: dict[str, Any]) -> Any:
    """The device of a scenario's models (their first parameter's).

    Example:
        >>> import torch
        >>> batch_device({"a": torch.nn.Linear(2, 2)})
        device(type='cpu')
    """
    return next(next(iter(models.values())).parameters()).device


def audit_rows(audit: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a scenario's audit (results.json's ``audit[scenario]``): per model the cascade's
    accuracies and the sweep (means over seeds), the robust accuracy, the verdict and the reasons of the seeds
    that gave it (:func:`~captum_topgap.app.findings.verdict_reasons`).
    """
    first = next(iter(audit.values()))
    attacks = list(cascade_columns(first))
    sweep = list(first["seeds"][0]["sweep"])
    rows = []
    for name, entry in audit.items():
        swept = [statistics.fmean(seed["sweep"][eps] for seed in entry["seeds"]) for eps in sweep]
        rows.append([name, *[f"{cascade_columns(entry)[a]:.3f}" for a in attacks], *[f"{v:.3f}" for v in swept],
                     f"{entry['robust_accuracy']:.3f}", entry["verdict"], "; ".join(verdict_reasons(entry))])
    return ["model", *attacks, *[f"pgd20 @ {eps}" for eps in sweep], "robust accuracy", "verdict",
            "reasons (the seeds with that verdict)"], rows


def embedded_image(path: Path, alt: str) -> str:
    """An ``<img>`` with the PNG at ``path`` embedded as a data URI (the page stays one file)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def html_table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    """An HTML table of escaped cells; ``classes`` gives each row's CSS class."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(f"<tr class=\"{(classes or [''] * len(rows))[i]}\">" + "".join(
        f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def claims_table(claims: list[dict[str, Any]], scenario: str, one_seed: bool) -> str:
    """The claims of a scenario as an HTML table: claim, paper, ours, criterion, verdict."""
    rows, classes = [], []
    for claim in claims:
        if claim["scenario"] != scenario:
            continue
        verdict = "held" if claim["held"] else "did not hold"
        rows.append([claim["claim"], claim["paper"], cell(claim), claim["criterion"],
                     "; ".join(claim.get("mechanism", [])) or "–",
                     verdict + (" (indicative: 1 seed)" if one_seed else "")])
        classes.append("held" if claim["held"] else "not")
    return html_table(["claim", "paper", "ours (mean ± sd over seeds)", "criterion (fixed before the run)",
                       "measured mechanism (when it did not hold)", "verdict"], rows, classes)


def budget_text(name: str, scene: dict[str, Any]) -> str:
    """One scenario's data and budget in a sentence, for the page (results.json's ``scenarios[name]``).

    Example:
        >>> budget_text("s", {"data": "Textured MNIST", "size": 32, "budget": {"images": 100, "epochs": 2,
        ...     "test_images": 50, "explain_images": 8, "attack_images": 0, "audit_images": 0, "seeds": [0]}})
        's: Textured MNIST at 32 px, 100 training images × 2 epochs, 50 test images, 8 explained, seeds 0'
    """
    budget = scene["budget"]
    parts = [f"{name}: {scene['data']} at {scene['size']} px, {budget['images']} training images × "
             f"{budget['epochs']} epochs, {budget['test_images']} test images"]
    parts += [f"{budget[key]} {what}" for key, what in (("explain_images", "explained"),
              ("attack_images", "attacked by PGD-20 (ε = 8/255, Foolbox)"), ("audit_images", "audited"))
              if budget[key]]
    return ", ".join(parts) + ", seeds " + ", ".join(str(seed) for seed in budget["seeds"])


def backbone_text(config: dict[str, Any]) -> str:
    """How the models of the scenarios that take a pretrained backbone start, for the report's first line.

    Example:
        >>> backbone_text({"backbone": "scratch"})
        'each from scratch'
    """
    if config.get("backbone") == "pretrained":
        return (f"the pretrained scenarios' models from ImageNet EfficientNet-Lite0 at {config['pretrained_size']} px "
                "(the papers' protocol; λ and optimiser as chosen for the from-scratch ResNet-18, not re-chosen for "
                "this backbone), the others from scratch")
    return "each from scratch"


def write_html(report: dict[str, Any], figures: dict[str, Path], out: Path) -> Path:
    """``out/index.html``: one self-contained page (figures embedded as data URIs, no script)."""
    config, claims = report["config"], report["claims"]
    one_seed = len(config["seeds"]) == 1
    held = sum(claim["held"] for claim in claims)
    sections = []
    for scenario in report["scenarios"]:
        scene = report["scenarios"][scenario]
        header, rows = model_table(report["models"], scenario, scene["columns"])
        parts = [f"<h2>Scenario “{scenario}”</h2><p>{html.escape(scene['paper'])}: {html.escape(scene['table'])}. "
                 f"{html.escape(scene['description'])}</p><p>{html.escape(budget_text(scenario, scene))}; "
                 f"{scene['seconds'] / 60:.1f} min ({scene['reference_steps']:.0f} reference steps).</p>",
                 claims_table(claims, scenario, one_seed), "<h3>Measures (mean ± sd over seeds)</h3>",
                 html_table(header, rows)]
        for title, columns in scene.get("tables", {}).items():
            header, rows = model_table(report["models"], scenario, columns, seconds=False)
            if rows:
                parts += [f"<h3>{html.escape(title)} (mean ± sd over seeds)</h3>", html_table(header, rows)]
        if scenario in report.get("audit", {}):
            audit = report["audit"][scenario]
            parts += ["<h3>Robustness audit (cascade at ε = 8/255, means over seeds)</h3>",
                      html_table(*audit_rows(audit)),
                      f"<p>Verdict rules (fixed in code): {html.escape(next(iter(audit.values()))['rules'])}.</p>"]
        for key, caption in ((f"{scenario}_heatmaps", "Heat-maps of the true class (first seed), digit mask "
                              "outlined in white."), (f"{scenario}_erf", "ERF of the true-class logit, per model."),
                             (f"{scenario}_audit", "The robustness audit: accuracy after each attack of the "
                              "cascade, and the reference attack's accuracy as ε grows (means over seeds)."),
                             (f"{scenario}_diagnostic", "The collapse diagnostic during training (first 64 "
                              "training images, mean over seeds): positive fraction and in-mask share of the "
                              "true class's Grad-CAM per layer, and the shifted validation accuracy."),
                             (f"{scenario}_perception", "Perception Visualization of the predicted class (first "
                              "seed, test split): per model a correct and a wrong prediction, each as input | "
                              "Grad-CAM over the input | reconstruction D(E(x)) | PV = s ⊙ D(E(x)) + (1 − s) ⊙ "
                              "0.5; y the label, ŷ the model's decision."),
                             (f"{scenario}_annotations", "The pix2pix pseudo-annotator's masks at each n (first seed, "
                              "validation images; the ReFF supplementary's Fig. 2), the true digit mask outlined."),
                             (f"{scenario}_attention", "The ABN models' attention maps M(x) at each n (first seed, "
                              "validation images; the supplementary's Fig. 6).")):
            if key in figures:
                parts.append(embedded_image(figures[key], caption) + f"<p>{html.escape(caption)}</p>")
        sections.append("".join(parts))
    seeds = ", ".join(str(s) for s in config["seeds"])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>captum-topgap demo</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:1em 0;font-size:14px}}td,th{{border:1px solid #bbb;padding:3px 8px}}
tr.held td:last-child{{color:#176317;font-weight:bold}}tr.not td:last-child{{color:#a11;font-weight:bold}}
img{{max-width:100%}}</style></head><body>
<h1>captum-topgap demo</h1>
<p>Models {backbone_text(config)} ({config.get('optimizer', 'adam')}, lr {config['lr']:g}, batch
{config['batch_size']}), seeds {seeds}. Models whose validation split is drawn like their training data are
measured at their best validation epoch, those under a shift at their last (their validation split is shifted).
Each claim is judged by the criterion printed beside it, fixed in code before the run; λ of every variant was
chosen on a shifted validation split, never on the test. Reference step (a ResNet-18 training step, 48 px, batch
32) on this machine: {report['reference_step']:.3f} s; peak memory {report['peak_memory_mb']:.0f} MiB.</p>
<p><b>{held} of {len(claims)} claims held</b>{' — one seed: the verdicts are indicative' if one_seed else ''}.
Total time {report['seconds'] / 60:.1f} min.</p>
{''.join(sections)}
<p>Every number is in <a href="results.json">results.json</a>; every checkpoint listed there loads with
<code>captum_topgap.load_model</code> and <code>captum-topgap explain/evaluate/visualize --checkpoint</code>.</p>
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def summary(report: dict[str, Any]) -> str:
    """The terminal summary: per scenario the measures table, then every claim with its verdict."""
    lines = []
    for scenario in report["scenarios"]:
        scene = report["scenarios"][scenario]
        lines.append(f"\n[{scenario}]")
        for index, columns in enumerate((scene["columns"], *scene.get("tables", {}).values())):
            header, rows = model_table(report["models"], scenario, columns, seconds=index == 0)
            if not rows:
                continue
            widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
            for row in [header, *rows]:
                lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if scenario in report.get("audit", {}):
            for row in audit_rows(report["audit"][scenario])[1]:
                lines.append(f"  audit {row[0]}: robust accuracy {row[-3]}, {row[-2]} ({row[-1]})")
    one_seed = len(report["config"]["seeds"]) == 1
    for claim in report["claims"]:
        verdict = ("held" if claim["held"] else "did not hold") + (", indicative" if one_seed else "")
        lines.append(f"[{verdict}] {claim['claim']}: {cell(claim)} ({claim['criterion']})")
        lines += [f"    why: {reason}" for reason in claim.get("mechanism", [])]
    return "\n".join(lines)

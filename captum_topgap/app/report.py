"""The demo's report: figures, one self-contained HTML page and the terminal summary.

Input is the report dict of :func:`captum_topgap.app.demo.run_demo` (the same data as ``results.json``):
``claims`` (each with values per seed and a verdict) and ``models`` (per model and seed: measures,
training history, checkpoint). Per scenario the page has the claims table (the paper's figure, ours as
mean ± sd, the criterion, the verdict), the measures of every model, a heat-map grid and, for the spurious
scenario, the collapse diagnostic per epoch of each ReFF / RRR variant.

Example:
    >>> cell({"values": [0.5, 0.7], "reference_values": [0.1, 0.2]})
    '0.600 ± 0.141 vs 0.150 ± 0.071'
"""

from __future__ import annotations

import base64
import html
import statistics
from pathlib import Path
from typing import Any

from captum_topgap.app.findings import verdict_reasons
from captum_topgap.app.plots import save_audit_curves, save_diagnostic_curves, save_overlays
from captum_topgap.data import collate
from captum_topgap.evaluate.audit import cascade_columns
from captum_topgap.evaluate.claims import mean_sd
from captum_topgap.registry import get_method

OBJECT_COLUMNS = (("baseline", "gradcam", "ResNet-18: Grad-CAM"), ("baseline", "recipro_cam", "ResNet-18: Recipro-CAM"),
                  ("baseline", "augmented_gradcam", "ResNet-18: Augmented Grad-CAM"),
                  ("topgap", "topgap_cam", "Top-GAP: its CAM"))
MEASURES = {
    "object": (("accuracy", "accuracy"), ("iou/gradcam", "IoU Grad-CAM"), ("iou/recipro_cam", "IoU Recipro-CAM"),
               ("iou/augmented_gradcam", "IoU Aug. Grad-CAM"), ("iou/topgap_cam", "IoU Top-GAP CAM"),
               ("topk_on_object", "Top-GAP's top-k on the object"),
               ("erf_background_share", "ERF on background"), ("pgd20_background", "PGD-20 background")),
    "robustness": (("accuracy", "clean accuracy"), ("pgd20", "PGD-20 (the poster's)"),
                   ("robust_accuracy", "robust accuracy (audit)"),
                   ("gradient_masked", "gradient-masked (share of seeds)")),
    "spurious": (("in_distribution_accuracy", "in distribution"), ("shifted_accuracy", "shifted"),
                 ("follows_background", "follows background"), ("min_positive_fraction", "min positive fraction"),
                 ("in_mask_share", "Grad-CAM in-mask share (≥ 6 × 6)"), ("erf_digit_share", "ERF on digit"),
                 ("mask_area", "mask area")),
}
DESCRIPTIONS = {
    "object": "Train and test (p, q) = (1, 0): the background is random, what decides the label lies on the digit "
              "— the setting of Top-GAP's localisation, ERF and attack claims.",
    "robustness": "Train and test (p, q) = (1, 0) at 32 px: the Top-GAP poster's CIFAR-10 table in the nearest form "
                  "offline — CIFAR PreAct ResNet-18s trained normally (no adversarial training), attacked at ε = 8/255 "
                  "by PGD-20 as the poster does and by the robustness audit (a cascade of stronger gradient attacks, "
                  "Square, transfer from the seed's other model, an ε sweep), whose verdict follows the rules printed "
                  "below it.",
    "spurious": "Train (p, q) = (0, 1), test (1, 1): in training the background gives the class away and the digit "
                "texture is random; at test time the background is random too — the setting of ReFF's Table 2.",
}


def cell(claim: dict[str, Any]) -> str:
    """"mean ± sd" of the claimed model, and "vs mean ± sd" of the reference when there is one."""
    text = "{:.3f} ± {:.3f}".format(*mean_sd(claim["values"]))
    if claim.get("reference_values") is not None:
        text += " vs {:.3f} ± {:.3f}".format(*mean_sd(claim["reference_values"]))
    return text


def model_table(models: list[dict[str, Any]], scenario: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per model, mean ± sd over seeds) of a scenario's measures."""
    present = [(key, title) for key, title in MEASURES[scenario]
               if any(key in row["measures"] for row in models if row["scenario"] == scenario)]
    names: dict[str, str] = {}
    for row in models:
        if row["scenario"] == scenario:
            names.setdefault(row["name"], row["label"])
    rows = []
    for name, label in names.items():
        runs = [row for row in models if row["scenario"] == scenario and row["name"] == name]
        seconds = statistics.fmean(row["train_seconds"] for row in runs)
        cells = []
        for key, _ in present:
            values = [row["measures"][key] for row in runs if key in row["measures"]]
            cells.append("{:.3f} ± {:.3f}".format(*mean_sd(values)) if values else "–")
        rows.append([label, *cells, f"{seconds:.0f}"])
    return ["model", *[title for _, title in present], "training s"], rows


def save_figures(rows: list[dict[str, Any]], kept: dict[str, Any], out: Path,
                 audit: dict[str, dict[str, Any]] | None = None) -> dict[str, Path]:
    """Heat-map grids of both scenarios (first seed, four test images, mask outlined), the ERF maps of the
    object scenario and the diagnostic curves of the spurious scenario's ReFF / RRR variants.

    ``kept[scenario]`` holds the rendered ``data``, the first seed's ``models``, the methods' ``options``
    and, for the spurious scenario, the ``layer`` whose Grad-CAM is drawn.
    """
    figures: dict[str, Path] = {}
    if "object" in kept:
        object_figures(kept["object"], out, figures)
    if "spurious" in kept:
        spurious_figures(rows, kept["spurious"], out, figures)
    for scenario, models in (audit or {}).items():
        figures[f"{scenario}_audit"] = save_audit_curves(models, out / f"{scenario}_audit.png")
    return figures


def object_figures(scene: dict[str, Any], out: Path, figures: dict[str, Path]) -> None:
    """The object scenario's heat-map grid and ERF maps (first seed, four test images)."""
    batch = collate(scene["data"]["test"][:4])
    maps = {title: get_method(method, scene["models"][name], **scene["options"].get(method, {}))
            .attribute(batch.images, target=batch.labels).detach() for name, method, title in OBJECT_COLUMNS}
    figures["object_heatmaps"] = out / "object_heatmaps.png"
    save_overlays(batch.images, maps, figures["object_heatmaps"], batch.masks)
    erf = {f"{name}: ERF": get_method("erf", model).attribute(batch.images, target=batch.labels).detach()
           for name, model in scene["models"].items()}
    figures["object_erf"] = out / "object_erf.png"
    save_overlays(batch.images, erf, figures["object_erf"], batch.masks)


def spurious_figures(rows: list[dict[str, Any]], scene: dict[str, Any], out: Path, figures: dict[str, Path]) -> None:
    """The spurious scenario's Grad-CAM grid and the diagnostic curves of its ReFF / RRR variants."""
    batch = collate(scene["data"]["in_distribution"][:4])
    layer = scene["layer"]
    maps = {f"{name}: Grad-CAM {layer}": get_method("gradcam", model, layer).attribute(
        batch.images, target=batch.labels).detach() for name, model in scene["models"].items()}
    figures["spurious_heatmaps"] = out / "spurious_heatmaps.png"
    save_overlays(batch.images, maps, figures["spurious_heatmaps"], batch.masks)
    histories: dict[str, list[list[dict]]] = {}
    for row in rows:
        if row["scenario"] == "spurious" and "diagnostic" in row["history"][0]:
            histories.setdefault(row["label"], []).append(row["history"])
    if histories:
        figures["spurious_diagnostic"] = save_diagnostic_curves(histories, out / "spurious_diagnostic.png")


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


def backbone_text(config: dict[str, Any]) -> str:
    """How the object and spurious scenarios' models start, for the report's first line.

    Example:
        >>> backbone_text({"size": 48, "backbone": "scratch"})
        '48 px, ResNet-18 from scratch'
    """
    if config.get("backbone") == "pretrained":
        return (f"{config['pretrained_size']} px, ImageNet EfficientNet-Lite0 fine-tuned (the papers' protocol; λ "
                "and optimiser as chosen for the from-scratch ResNet-18, not re-chosen for this backbone)")
    return f"{config['size']} px, ResNet-18 from scratch"


def write_html(report: dict[str, Any], figures: dict[str, Path], out: Path) -> Path:
    """``out/index.html``: one self-contained page (figures embedded as data URIs, no script)."""
    config, claims = report["config"], report["claims"]
    one_seed = len(config["seeds"]) == 1
    held = sum(claim["held"] for claim in claims)
    sections = []
    for scenario in report["scenarios"]:
        header, rows = model_table(report["models"], scenario)
        parts = [f"<h2>Scenario “{scenario}”</h2><p>{html.escape(DESCRIPTIONS[scenario])}</p>",
                 claims_table(claims, scenario, one_seed), "<h3>Measures (mean ± sd over seeds)</h3>",
                 html_table(header, rows)]
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
                              "true class's Grad-CAM per layer, and the shifted validation accuracy.")):
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
<p>Textured MNIST at {backbone_text(config)} ({config.get('optimizer', 'adam')}, lr {config['lr']:g}, batch
{config['batch_size']}), seeds {seeds}: {config['object_images']} training images × {config['object_epochs']} epochs
in the object scenario, {config['spurious_images']} × {config['spurious_epochs']} in the spurious one;
{config['robust_size']} px and {config['robust_images']} × {config['robust_epochs']} in the robustness one (audit on
{config['audit_images']} test images);
{config['test_images']} test images per split; heat-maps on {config['explain_images']} and PGD-20 (ε = 8/255,
Foolbox) on {config['attack_images']} test images. The object and robustness models are measured at their best
validation epoch (validation drawn like training), the spurious ones at their last (their validation split is
shifted). Each claim is judged by the criterion printed beside it,
fixed in code before the run; λ of every variant was chosen on a shifted validation split, never on the test.</p>
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
        header, rows = model_table(report["models"], scenario)
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        lines.append(f"\n[{scenario}]")
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

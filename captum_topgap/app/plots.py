"""Figures saved as PNG: sample grids with mask outlines, heat-map overlays, ERF maps side by side, the
expansion pipeline, the collapse diagnostic and Perception Visualization's panels. Figures are built with
matplotlib's object API, so drawing never changes the caller's pyplot backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pytorch_grad_cam.utils.image import show_cam_on_image

from captum_topgap._state import preserved_state
from captum_topgap.evaluate.audit import cascade_columns
from captum_topgap.evaluate.metrics import normalize_per_image
from captum_topgap.methods.erf import erf_at


def save_sample_grid(samples: Sequence[tuple], path: str | Path, columns: int = 8,
                     class_names: Sequence[str] | None = None) -> Path:
    """Save ``(image, label, mask)`` samples as a PNG grid, each mask outlined in yellow.

    Example:
        >>> import tempfile
        >>> sample = (torch.rand(3, 16, 16), 3, torch.zeros(1, 16, 16, dtype=torch.bool))
        >>> save_sample_grid([sample], tempfile.mkdtemp() + "/grid.png").suffix
        '.png'
    """
    rows = -(-len(samples) // columns)
    figure, axes = new_figure(rows, columns, figsize=(1.6 * columns, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, label, mask, *_) in zip(axes.flat, samples, strict=False):
        ax.imshow(torch.as_tensor(image).permute(1, 2, 0).clamp(0, 1).numpy())
        if mask is not None and bool(torch.as_tensor(mask).any()):
            ax.contour(torch.as_tensor(mask)[0].float().numpy(), levels=[0.5], colors="yellow", linewidths=0.8)
        ax.set_title(class_names[label] if class_names else str(label), fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)
    return png_path(path)


def overlay(image: torch.Tensor, heatmap: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam's ``show_cam_on_image`` of a (3, H, W) image in [0, 1] and any (1, H, W) map
    (min-max scaled here): an RGB uint8 array (H, W, 3).
    """
    rgb = torch.as_tensor(image).detach().float().permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    heat = normalize_per_image(torch.as_tensor(heatmap).detach().float().reshape(1, 1, *rgb.shape[:2]))
    return show_cam_on_image(rgb, heat[0, 0].cpu().numpy(), use_rgb=True)


def save_overlays(images: torch.Tensor, heatmaps: dict[str, torch.Tensor], path: str | Path,
                  masks: torch.Tensor | None = None) -> list[list[np.ndarray]]:
    """Grid PNG: rows = images, columns = methods, each cell the heat-map over the image (grad-cam's
    overlay), the ground-truth mask outlined in white. Returns the overlay arrays, row by row.

    Example:
        >>> import tempfile
        >>> cells = save_overlays(torch.rand(2, 3, 8, 8), {"a": torch.rand(2, 1, 8, 8)},
        ...                       tempfile.mkdtemp() + "/o.png")
        >>> len(cells), len(cells[0]), cells[0][0].shape
        (2, 1, (8, 8, 3))
    """
    names = list(heatmaps)
    figure, axes = new_figure(len(images), len(names), figsize=(2.0 * len(names), 2.0 * len(images)),
                                squeeze=False)
    cells: list[list[np.ndarray]] = []
    for row, image in enumerate(images):
        cells.append([])
        for col, name in enumerate(names):
            cell = overlay(image, heatmaps[name][row])
            cells[-1].append(cell)
            ax = axes[row, col]
            ax.imshow(cell)
            if masks is not None:
                ax.contour(torch.as_tensor(masks[row]).reshape(*cell.shape[:2]).float().cpu().numpy(), levels=[0.5],
                           colors="white", linewidths=0.8)
            ax.axis("off")
            if row == 0:
                ax.set_title(name, fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)
    return cells


def save_erf_comparison(models: dict[str, tuple[torch.nn.Module, torch.nn.Module]], image: torch.Tensor,
                        positions: Sequence[tuple[int, int]], path: str | Path) -> dict[str, torch.Tensor]:
    """The Top-GAP poster's figure: ERF maps of several positions of a layer, one row per model.

    ``models`` maps a row title to ``(model, layer)``; positions are in the layer's output coordinates
    (e.g. the 56 × 56 CAM of a Top-GAP network). Returns the ERF maps (P, H, W) per model.
    """
    fields = {}
    figure, axes = new_figure(len(models), len(positions), figsize=(2.0 * len(positions), 2.1 * len(models)),
                                squeeze=False)
    for row, (name, (model, layer)) in enumerate(models.items()):
        with preserved_state(model):
            fields[name] = erf_at(model, image[None], layer, positions)[0].detach()
        for col, position in enumerate(positions):
            ax = axes[row, col]
            ax.imshow(fields[name][col].cpu().numpy(), cmap="magma")
            ax.set_title(f"{name} ERF{position}", fontsize=7)
            ax.axis("off")
    figure.tight_layout()
    save_figure(figure, path)
    return fields


def save_expansion_pipeline(image: torch.Tensor, steps: dict[str, np.ndarray], path: str | Path) -> Path:
    """The Expansion CAM poster's pipeline figure for one image: image, low-res CAM, high-res CAM with the
    focal points, the region-growing boundary on the gradient map, the refined CAM and the masked image.

    ``steps`` is the dict of :func:`captum_topgap.methods.expansion_cam.refine`.

    Example:
        >>> import tempfile
        >>> from captum_topgap.methods.expansion_cam import refine
        >>> steps = refine(np.random.rand(16, 16), np.random.rand(16, 16), hole_area=8)
        >>> save_expansion_pipeline(torch.rand(3, 16, 16), steps, tempfile.mkdtemp() + "/p.png").suffix
        '.png'
    """
    rgb = torch.as_tensor(image).detach().float().permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    panels = [("image", rgb, None), ("low-res CAM", steps["low"], "jet"), ("high-res CAM + focal points",
              steps["high"], "jet"), ("region growing on the gradient", steps["gradient"], "gray"),
              ("refined CAM", steps["refined"], "jet"), ("masked image", rgb * steps["refined"][..., None], None)]
    figure, axes = new_figure(1, len(panels), figsize=(2.2 * len(panels), 2.5))
    for ax, (title, picture, cmap) in zip(axes, panels, strict=True):
        ax.imshow(picture, cmap=cmap)
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    axes[2].scatter(steps["seeds"][:, 1], steps["seeds"][:, 0], s=12, c="white", marker="x")
    axes[3].contour(steps["filled"].astype(float), levels=[0.5], colors="red", linewidths=0.8)
    figure.tight_layout()
    save_figure(figure, path)
    return Path(path)


def save_diagnostic_curves(histories: dict[str, list[list[dict]]], path: str | Path) -> Path:
    """The collapse diagnostic during training: one column per model, rows = positive fraction and in-mask
    share of the true class's Grad-CAM at each monitored layer, and validation accuracy, per epoch (mean over
    the seeds' histories of :func:`captum_topgap.train.loop.train`).

    Example:
        >>> import tempfile
        >>> record = {"epoch": 1, "val_accuracy": 0.5,
        ...           "diagnostic": {"layer1": {"positive_fraction": 0.4, "in_mask_share": 0.3}}}
        >>> save_diagnostic_curves({"ReFF": [[record, {**record, "epoch": 2}]]}, tempfile.mkdtemp() + "/d.png").suffix
        '.png'
    """
    rows = (("positive_fraction", "positive fraction"), ("in_mask_share", "in-mask share"),
            ("val_accuracy", "validation accuracy"))
    figure, axes = new_figure(len(rows), len(histories), figsize=(3.2 * len(histories), 7.0), squeeze=False,
                                sharey="row")
    for col, (name, runs) in enumerate(histories.items()):
        epochs = [record["epoch"] for record in runs[0]]
        layers = list(runs[0][0].get("diagnostic", {}))
        for row, (key, title) in enumerate(rows):
            ax = axes[row, col]
            series = {"": [[record.get(key) for record in run] for run in runs]} if key == "val_accuracy" else {
                layer: [[record["diagnostic"][layer][key] for record in run] for run in runs] for layer in layers}
            for label, values in series.items():
                mean = [float(np.mean([0.0 if v is None else v for v in column]))
                        for column in zip(*values, strict=True)]
                ax.plot(epochs, mean, marker="o", markersize=3, label=label or None)
            if key == "positive_fraction":
                ax.axhline(0.05, color="red", linewidth=0.6, linestyle="--")
            ax.set_ylim(0, 1)
            ax.set_title(f"{name}: {title}" if row == 0 else title, fontsize=8)
            ax.set_xlabel("epoch", fontsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
            if row == 0 and layers:
                ax.legend(fontsize=6)
    figure.tight_layout()
    save_figure(figure, path)
    return Path(path)


def save_audit_curves(audit: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """The robustness audit per model (results.json's ``audit[scenario]``): left, the accuracy after each attack
    of the cascade at ε (clean first, the robust accuracy last); right, accuracy against ε for the reference
    attack, from ε to the largest budget of the sweep (means over seeds).

    Example:
        >>> import tempfile
        >>> entry = {"clean": 1.0, "pgd20": 0.5, "square1000": 0.4, "robust_accuracy": 0.4,
        ...          "seeds": [{"sweep": {"16/255": 0.1, "128/255": 0.0}}]}
        >>> save_audit_curves({"topgap": entry}, tempfile.mkdtemp() + "/a.png").suffix
        '.png'
    """
    figure, axes = new_figure(1, 2, figsize=(10.0, 3.4), squeeze=False)
    for name, entry in audit.items():
        columns = cascade_columns(entry)
        attacks = list(columns)
        axes[0, 0].plot(range(len(attacks)), list(columns.values()), marker="o", label=name)
        axes[0, 0].set_xticks(range(len(attacks)), attacks, rotation=30, ha="right", fontsize=7)
        budgets = list(entry["seeds"][0]["sweep"])
        swept = [float(np.mean([seed["sweep"][eps] for seed in entry["seeds"]])) for eps in budgets]
        first = [key for key in attacks if key != "clean"][:1]
        axes[0, 1].plot(range(len(budgets) + 1), [columns[first[0]] if first else columns["clean"], *swept],
                        marker="o", label=name)
        axes[0, 1].set_xticks(range(len(budgets) + 1), ["8/255", *budgets], fontsize=7)
    axes[0, 0].set_title("accuracy after each attack of the cascade (ε = 8/255)", fontsize=8)
    axes[0, 1].set_title("reference attack: accuracy against ε", fontsize=8)
    for ax in axes[0]:
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)
    return Path(path)


def save_perception_panels(panels: dict[str, dict[str, torch.Tensor]], path: str | Path) -> Path:
    """Perception Visualization per model: one row per model (``panels`` by label, each with ``images``,
    ``labels``, ``prediction``, ``saliency``, ``reconstruction`` and ``pv`` of a few images), for each image a
    group titled with the model, correct or wrong, y and ŷ: input | Grad-CAM over the input | reconstruction
    D(E(x)) | PV.

    Example:
        >>> import tempfile
        >>> panel = {"images": torch.rand(2, 3, 8, 8), "labels": torch.tensor([1, 2]),
        ...          "prediction": torch.tensor([1, 0]), "saliency": torch.rand(2, 1, 8, 8),
        ...          "reconstruction": torch.rand(2, 3, 8, 8), "pv": torch.rand(2, 3, 8, 8)}
        >>> save_perception_panels({"ResNet-18": panel}, tempfile.mkdtemp() + "/pv.png").suffix
        '.png'
    """
    kinds = ("input", "Grad-CAM", "reconstruction", "PV")
    groups = max(len(panel["images"]) for panel in panels.values())
    figure = Figure(figsize=(1.45 * len(kinds) * groups, 2.05 * len(panels)), layout="constrained")
    cells = np.array(figure.subfigures(len(panels), groups, squeeze=False))
    for row, (label, panel) in enumerate(panels.items()):
        for index in range(groups):
            axes = cells[row, index].subplots(1, len(kinds))
            for ax in axes:
                ax.axis("off")
            if index >= len(panel["images"]):
                continue
            image = panel["images"][index]
            truth, decision = int(panel["labels"][index]), int(panel["prediction"][index])
            case = "correct" if truth == decision else "wrong"
            cells[row, index].suptitle(f"{label}: {case} (y {truth}, ŷ {decision})", fontsize=9)
            pictures = (image.permute(1, 2, 0).clamp(0, 1).numpy(), overlay(image, panel["saliency"][index]),
                        panel["reconstruction"][index].permute(1, 2, 0).clamp(0, 1).numpy(),
                        panel["pv"][index].permute(1, 2, 0).clamp(0, 1).numpy())
            for ax, kind, picture in zip(axes, kinds, pictures, strict=True):
                ax.imshow(picture)
                ax.set_title(kind, fontsize=8)
    save_figure(figure, path)
    return png_path(path)


def new_figure(rows: int, columns: int, figsize: tuple[float, float],
               **options: Any) -> tuple[Figure, np.ndarray]:
    """A figure and its axes (``Figure.subplots``), without pyplot's global state: no backend is switched.

    Example:
        >>> figure, axes = new_figure(1, 2, (4.0, 2.0), squeeze=False)
        >>> axes.shape
        (1, 2)
    """
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(rows, columns, **options)


def png_path(path: str | Path) -> Path:
    """Where :func:`save_figure` writes ``path``: as given, or with ``.png`` appended when it has no suffix
    (``--out runs/cat`` writes ``runs/cat.png``). An existing folder stays as it is, so the output check of
    ``captum-topgap`` (:func:`captum_topgap._checks.check_writable`) refuses it instead of writing ``FOLDER.png``
    beside it.

    Example:
        >>> import tempfile
        >>> str(png_path("runs/cat")), str(png_path("runs/cat.png"))
        ('runs/cat.png', 'runs/cat.png')
        >>> folder = tempfile.mkdtemp()
        >>> png_path(folder) == Path(folder)
        True
    """
    path = Path(path)
    return path if path.suffix or path.is_dir() else path.with_name(path.name + ".png")


def save_figure(figure: Figure, path: str | Path) -> None:
    """Write ``figure`` as a PNG at 100 dpi at :func:`png_path` of ``path``, creating the folder."""
    path = png_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)

"""Figures saved as PNG: sample grids with mask outlines (later: heat-map overlays, ERF maps)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


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
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, label, mask, *_) in zip(axes.flat, samples, strict=False):
        ax.imshow(torch.as_tensor(image).permute(1, 2, 0).clamp(0, 1).numpy())
        if mask is not None and bool(torch.as_tensor(mask).any()):
            ax.contour(torch.as_tensor(mask)[0].float().numpy(), levels=[0.5], colors="yellow", linewidths=0.8)
        ax.set_title(class_names[label] if class_names else str(label), fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

"""Figures: overlays are pytorch-grad-cam's, ERF comparison shows the ERF core's maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam.utils.image import show_cam_on_image

from captum_topgap.app import plots
from captum_topgap.app.plots import save_diagnostic_curves, save_erf_comparison, save_overlays
from captum_topgap.methods.erf import erf_at


def test_overlays_use_grad_cams_show_cam_on_image(tmp_path: Path) -> None:
    images, heat = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8) * 5
    masks = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    masks[:, :, 2:6, 2:6] = True
    cells = save_overlays(images, {"a": heat, "b": heat * 2}, tmp_path / "grid.png", masks)
    scaled = (heat[1, 0] - heat[1].min()) / (heat[1].max() - heat[1].min())
    expected = show_cam_on_image(images[1].permute(1, 2, 0).numpy(), scaled.numpy(), use_rgb=True)
    assert np.abs(cells[1][0].astype(int) - expected.astype(int)).max() <= 1
    assert np.array_equal(cells[1][0], cells[1][1])  # scaling a map does not change its overlay
    with Image.open(tmp_path / "grid.png") as png:
        assert png.format == "PNG"


def test_erf_comparison_shows_the_erf_core(tiny_net, tmp_path: Path) -> None:
    image = torch.rand(3, 8, 8)
    fields = save_erf_comparison({"tiny": (tiny_net, tiny_net.features)}, image, [(1, 1), (6, 6)],
                                 tmp_path / "erf.png")
    tiny_net.eval()
    assert torch.allclose(fields["tiny"], erf_at(tiny_net, image[None], tiny_net.features, [(1, 1), (6, 6)])[0])
    assert (tmp_path / "erf.png").stat().st_size > 1000


def test_diagnostic_curves_mark_whole_epochs_and_the_collapse_line(tmp_path: Path, monkeypatch) -> None:
    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: saved.append(figure))
    runs = [[{"epoch": e, "val_accuracy": 0.1 * e, "diagnostic": {"layer1": {"positive_fraction": 0.5,
                                                                              "in_mask_share": 0.2}}}
             for e in range(1, 6)]]
    save_diagnostic_curves({"ReFF": runs}, tmp_path / "d.png")
    axes = saved[0].axes
    saved[0].canvas.draw()
    ticks = [tick for ax in axes for tick in ax.get_xticks() if 1 <= tick <= 5]
    assert ticks and all(float(tick).is_integer() for tick in ticks)  # epochs, not 1.5
    assert [line.get_ydata()[0] for line in axes[0].lines][-1] == 0.05  # the collapse threshold

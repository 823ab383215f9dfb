"""Figures: overlays are pytorch-grad-cam's, ERF comparison shows the ERF core's maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam.utils.image import show_cam_on_image

from captum_topgap.app.plots import save_erf_comparison, save_overlays
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

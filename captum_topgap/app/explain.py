"""Explain one photo with any registered method: top-5 classes and a heat-map overlay PNG.

Used by ``captum-topgap explain``; with no model it explains with the pretrained EfficientNet-Lite0 of
:mod:`captum_topgap.models.pretrained`, with no image scikit-image's bundled cat photo ("chelsea").

Example:
    >>> import tempfile, torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> result = explain(net, torch.rand(1, 3, 16, 16), ["gradcam"], tempfile.mkdtemp() + "/cat.png", ["a", "b"])
    >>> sorted(result), result["maps"]["gradcam"].shape
    (['maps', 'target', 'top'], torch.Size([1, 1, 16, 16]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from captum_topgap._state import preserved_state
from captum_topgap.app.plots import save_overlays
from captum_topgap.evaluate.heatmaps import as_heatmap
from captum_topgap.models.pretrained import top_classes
from captum_topgap.registry import get_method


def load_image(path: str | Path | None, size: int) -> torch.Tensor:
    """A (1, 3, size, size) float image in [0, 1] from a file (any PIL format), or the bundled cat photo.

    Example:
        >>> load_image(None, 64).shape
        torch.Size([1, 3, 64, 64])
    """
    if path is None:
        from skimage.data import chelsea

        array = chelsea()
    else:
        if not Path(path).is_file():
            raise FileNotFoundError(f"IMAGE {path} does not exist; give a photo (PNG, JPEG, …) or none for the cat")
        array = np.asarray(Image.open(path).convert("RGB"))
    image = torch.from_numpy(array.copy()).permute(2, 0, 1).float()[None] / 255
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def explain(model: nn.Module, image: torch.Tensor, methods: Sequence[str], out: str | Path,
            class_names: Sequence[str], target: int | None = None,
            method_kwargs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Heat-maps of ``target`` (default: the top class) by each method, saved side by side as ``out``.

    Returns ``{"top": [(class, probability)] * 5, "target": int, "maps": {method: (1, 1, H, W)}}``.
    """
    with preserved_state(model), torch.no_grad():
        logits = model(image)
    target = int(logits.argmax(1)) if target is None else int(target)
    if not 0 <= target < logits.shape[1]:
        raise ValueError(f"--target must be a class index in [0, {logits.shape[1]}), got {target}")
    maps = {name: as_heatmap(get_method(name, model, **(method_kwargs or {}).get(name, {}))
                             .attribute(image, target=target)).detach()
            for name in methods}
    titled = {f"{name}\n{class_names[target]}": heat for name, heat in maps.items()}
    save_overlays(image, titled, out)
    return {"top": top_classes(logits[0], list(class_names)), "target": target, "maps": maps}

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
from PIL import Image, UnidentifiedImageError
from torch import nn

from captum_topgap._state import preserved_state
from captum_topgap.app.plots import save_overlays
from captum_topgap.evaluate.heatmaps import as_heatmap
from captum_topgap.models.pretrained import top_classes
from captum_topgap.registry import get_method

HIGH_DEPTH = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}
"""PIL modes of 16-bit greyscale images (PNG, TIFF) and the value of white: 16-bit PNGs open as ``I;16`` or ``I``."""


def unit_range(photo: Image.Image, path: str | Path) -> np.ndarray:
    """An image as float (H, W, 3) in [0, 1] by its real range: 8-bit modes / 255, 16-bit greyscale / 65 535,
    float images taken as they are when they lie in [0, 1]; other ranges are refused.

    Example:
        >>> deep = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
        >>> unit_range(deep, "deep.png")[0, :, 0].round(3).tolist()
        [0.0, 0.5, 1.0]
    """
    if photo.mode in HIGH_DEPTH or photo.mode == "F":
        values = np.asarray(photo, dtype=np.float32)
        top = 1.0 if photo.mode == "F" else HIGH_DEPTH[photo.mode]
        if values.size and (values.min() < 0 or values.max() > top):
            raise ValueError(f"IMAGE {path} ({photo.mode}) has values in [{values.min():g}, {values.max():g}], outside "
                             f"[0, {top:g}]; save it as 8- or 16-bit PNG or JPEG.")
        return np.repeat((values / top)[..., None], 3, axis=-1)
    return np.asarray(photo.convert("RGB"), dtype=np.float32) / 255


def load_image(path: str | Path | None, size: int) -> torch.Tensor:
    """A (1, 3, size, size) float image in [0, 1] from a file (any PIL format, 16-bit greyscale by its range), or
    the bundled cat photo.

    Example:
        >>> load_image(None, 64).shape
        torch.Size([1, 3, 64, 64])
    """
    if path is None:
        from skimage.data import chelsea

        array = chelsea().astype(np.float32) / 255
    else:
        if not Path(path).is_file():
            raise FileNotFoundError(f"IMAGE {path} does not exist; give a photo (PNG, JPEG, …) or none for the cat")
        try:
            photo = Image.open(path)
        except UnidentifiedImageError:
            raise ValueError(f"IMAGE {path} is not an image PIL can read; give a photo (PNG, JPEG, …) or none for "
                             "the cat") from None
        array = unit_range(photo, path)
    image = torch.from_numpy(array.copy()).permute(2, 0, 1).float()[None]
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

"""Explain one photo with any registered method: top-5 classes and a heat-map overlay PNG.

Used by ``captum-topgap explain``; with no model it explains with the pretrained EfficientNet-Lite0 of
:mod:`captum_topgap.models.pretrained`, with no image scikit-image's bundled cat photo ("chelsea").
Perception Visualization (:func:`explain_perception`) writes four panels instead of an overlay: the input,
the class's Grad-CAM at the decoder's layer, the reconstruction D(E(x)) and PV = s ⊙ D(E(x)) + (1 − s) ⊙ 0.5.

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
from captum_topgap.app.plots import new_figure, overlay, png_path, save_figure, save_overlays
from captum_topgap.evaluate.heatmaps import as_heatmap
from captum_topgap.models.perception import PerceptionDecoder
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


def load_image(path: str | Path | None, size: int | tuple[int, int]) -> torch.Tensor:
    """A (1, 3, size, size) float image in [0, 1] from a file (any PIL format, 16-bit greyscale by its range), or
    the bundled cat photo; ``size`` (H, W) gives (1, 3, H, W).

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
    side = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(image, size=side, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def explain(model: nn.Module, image: torch.Tensor, methods: Sequence[str], out: str | Path,
            class_names: Sequence[str], target: int | None = None,
            method_kwargs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Heat-maps of ``target`` (default: the top class) by each method, saved side by side as ``out``.

    Returns ``{"top": [(class, probability)] * 5, "target": int, "maps": {method: (1, 1, H, W)}}``.
    """
    logits = _checked_logits(model, image, target)
    target = int(logits.argmax(1)) if target is None else int(target)
    maps = {name: as_heatmap(get_method(name, model, **(method_kwargs or {}).get(name, {}))
                             .attribute(image, target=target)).detach()
            for name in methods}
    titled = {f"{name}\n{class_names[target]}": heat for name, heat in maps.items()}
    save_overlays(image, titled, out)
    return {"top": top_classes(logits[0], list(class_names)), "target": target, "maps": maps}


def explain_perception(decoder: PerceptionDecoder, images: torch.Tensor, out: str | Path,
                       class_names: Sequence[str], target: int | None = None,
                       options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Perception Visualization of ``target`` (default: each image's top class) saved as ``out``: one row per
    image, input | Grad-CAM | reconstruction | PV, where s is the class's Grad-CAM at the decoder's layer scaled to
    [0, 1] and

        PV = s ⊙ D(E(x)) + (1 − s) ⊙ 0.5

    Images of another size than the decoder's ``image_size`` are refused before anything is written.
    ``options`` go to the registry's ``perception_visualization`` (e.g. ``grey``).

    Returns ``{"top": [(class, probability)] * 5 of the first image, "target": (N,) classes, "maps":
    {"gradcam": (N, 1, H, W), "reconstruction": (N, C, H, W), "pv": (N, C, H, W)}}``.

    Example:
        >>> import tempfile, timm
        >>> decoder = PerceptionDecoder(timm.create_model("resnet18", num_classes=2), image_size=32)
        >>> result = explain_perception(decoder, torch.rand(2, 3, 32, 32), tempfile.mkdtemp() + "/pv.png", ["a", "b"])
        >>> tuple(result["maps"]["pv"].shape), len(result["target"])
        ((2, 3, 32, 32), 2)
    """
    decoder.check_size(images)
    logits = _checked_logits(decoder, images, target)
    targets = logits.argmax(1) if target is None else torch.full((len(images),), int(target), device=images.device)
    method = get_method("perception_visualization", decoder.classifier, decoder=decoder, **(options or {}))
    maps = {name: m.detach() for name, m in method.attribute_all(images, target=targets).items()}
    save_perception(images, maps, out, [class_names[int(c)] for c in targets])
    return {"top": top_classes(logits[0], list(class_names)), "target": targets, "maps": maps}


def weight_difference(first: nn.Module, second: nn.Module) -> str | None:
    """Where two models' state dicts differ (parameters and buffers, BatchNorm statistics included): the first
    entry only one of them has, or whose tensors differ in shape, dtype or any value; ``None`` when they are
    equal entry by entry (a_k == b_k for every key k).

    Example:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> weight_difference(a, a) is None, weight_difference(a, b), weight_difference(a, nn.Conv2d(2, 2, 1))
        (True, "'weight' differs", "'weight' differs")
        >>> c = nn.Linear(2, 2, bias=False)
        >>> _ = c.weight.data.copy_(a.weight.data)
        >>> weight_difference(a, c)
        "'bias' is in one of them only"
    """
    ours, theirs = first.state_dict(), second.state_dict()
    for key in [*ours, *(k for k in theirs if k not in ours)]:
        if key not in ours or key not in theirs:
            return f"{key!r} is in one of them only"
        a, b = ours[key], theirs[key]
        if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b.to(a.device)):
            return f"{key!r} differs"
    return None


def save_perception(images: torch.Tensor, maps: Mapping[str, torch.Tensor], path: str | Path,
                    labels: Sequence[str]) -> Path:
    """The PNG of :func:`explain_perception`: a row per image of input | Grad-CAM s over the input |
    reconstruction D(E(x)) | PV = s ⊙ D(E(x)) + (1 − s) ⊙ 0.5, titled with each row's explained class.

    Example:
        >>> import tempfile
        >>> maps = {"gradcam": torch.rand(1, 1, 8, 8), "reconstruction": torch.rand(1, 3, 8, 8),
        ...         "pv": torch.rand(1, 3, 8, 8)}
        >>> save_perception(torch.rand(1, 3, 8, 8), maps, tempfile.mkdtemp() + "/pv", ["cat"]).suffix
        '.png'
    """
    columns = {"input": images, "Grad-CAM": maps["gradcam"], "reconstruction": maps["reconstruction"],
               "PV": maps["pv"]}
    figure, axes = new_figure(len(images), len(columns), figsize=(2.0 * len(columns), 2.2 * len(images)),
                              squeeze=False)
    for row, label in enumerate(labels):
        for col, (name, panel) in enumerate(columns.items()):
            ax = axes[row, col]
            ax.imshow(overlay(images[row], panel[row]) if name == "Grad-CAM" else _rgb(panel[row]))
            ax.set_title(f"{name}\n{label}" if name != "input" else name, fontsize=8)
            ax.axis("off")
    figure.tight_layout()
    save_figure(figure, path)
    return png_path(path)


def _rgb(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) image in [0, 1] as an (H, W, 3) array for ``imshow`` (one channel repeated)."""
    array = image.detach().float().clamp(0, 1).cpu()
    return array.expand(3, -1, -1).permute(1, 2, 0).numpy() if len(array) == 1 else array.permute(1, 2, 0).numpy()


def _checked_logits(model: nn.Module, images: torch.Tensor, target: int | None) -> torch.Tensor:
    """The model's logits without gradients; a ``target`` outside its classes is refused."""
    with preserved_state(model), torch.no_grad():
        logits = model(images)
    if target is not None and not 0 <= int(target) < logits.shape[1]:
        raise ValueError(f"--target must be a class index in [0, {logits.shape[1]}), got {target}")
    return logits

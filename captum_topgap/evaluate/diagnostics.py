"""Is an explanation regulariser moving evidence, or gaming its own term? Measures of what it should move.

ReFF penalises the (ReLU'd) Grad-CAM of the true class outside the relevant region. A network can make
that term vanish without looking at the object: if the signed map M_l = Σ_k α_k A_k is negative
everywhere, the ReLU makes it zero (docs/reff.md). Two numbers per layer tell the cases apart:

    positive fraction  = share of positions (i, j) with M_l(i, j) > 0          (≈ 0: the map collapsed)
    in-mask share      = Σ_p ReLU(M'_l)(p) s(p) / Σ_p ReLU(M'_l)(p)            (M'_l: M_l upsampled to the image)

both for the plain logit of the true class, on images whose relevant region s is known. The in-mask
share of a map spread evenly over the image is the mask's area (``mask_area``), which is also all a
layer of 2 × 2 positions can reach; judge localisation at a layer with at least 6 × 6 positions.

On spurious data (Textured MNIST with p = 1 at test time) :func:`follows_background_rate` is the share
of images, among those whose background is tied to a class other than the label, predicted as that
class: a model that reads the background scores ≈ 1, one that reads the object ≈ 0.

Example:
    >>> import timm
    >>> model = timm.create_model("resnet18", num_classes=3)
    >>> images, labels, masks = torch.rand(2, 3, 64, 64), torch.tensor([0, 2]), torch.ones(2, 1, 64, 64)
    >>> diagnostic = gradcam_diagnostic(model, {"layer2": model.layer2}, images, labels, masks)
    >>> sorted(diagnostic["layer2"]), diagnostic["layer2"]["positions"], diagnostic["layer2"]["in_mask_share"]
    (['in_mask_share', 'mask_area', 'positions', 'positive_fraction'], 64, 1.0)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import check_mask
from captum_topgap._state import preserved_state
from captum_topgap.methods.gradcam import grad_cam_maps


class LayerDiagnostic(TypedDict):
    """The diagnostic of one layer (see the module docstring)."""

    positive_fraction: float
    in_mask_share: float | None
    positions: int
    mask_area: float


COLLAPSE_THRESHOLD = 0.05
"""A regularised layer whose positive fraction falls under this value has collapsed (training warns)."""


def gradcam_diagnostic(model: nn.Module, layers: Mapping[str, nn.Module], images: torch.Tensor,
                       labels: torch.Tensor, masks: torch.Tensor) -> dict[str, LayerDiagnostic]:
    """Per layer: positive fraction of the signed Grad-CAM of ``labels``, in-mask share of its positive mass,
    the number of positions h·w and the masks' mean area (the share of an evenly spread map).

    The model runs in eval mode and is restored exactly (state contract). ``in_mask_share`` is ``None``
    when no position is positive (nothing to share). Shares are pooled over the images (mass-weighted).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> out = gradcam_diagnostic(net, {"conv": net[1]}, torch.rand(1, 3, 8, 8), torch.tensor([1]),
        ...                          torch.zeros(1, 1, 8, 8))
        >>> out["conv"]["positions"], out["conv"]["mask_area"], out["conv"]["in_mask_share"] in (0.0, None)
        (64, 0.0, True)
    """
    masks = check_mask(masks, images).to(images.device)
    with preserved_state(model):
        _, maps = grad_cam_maps(model, images, labels.to(images.device), list(layers.values()), upsample=False,
                                relu=False)
    result: dict[str, LayerDiagnostic] = {}
    for name, signed in zip(layers, maps, strict=True):
        positive = F.relu(F.interpolate(signed, size=images.shape[-2:], mode="bilinear", align_corners=False))
        mass = float(positive.sum())
        result[name] = {
            "positive_fraction": float((signed > 0).float().mean()),
            "in_mask_share": float((positive * masks).sum()) / mass if mass > 0 else None,
            "positions": int(signed.shape[-2] * signed.shape[-1]),
            "mask_area": float(masks.mean()),
        }
    return result


def warn_if_collapsed(diagnostic: Mapping[str, Mapping[str, Any]], regularised: list[str],
                      threshold: float = COLLAPSE_THRESHOLD) -> list[str]:
    """Warn (``UserWarning``) for each regularised layer whose positive fraction is under ``threshold``;
    returns the names of those layers.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     collapsed = warn_if_collapsed({"layer4": {"positive_fraction": 0.0}}, ["layer4"])
        >>> collapsed, str(caught[0].message)[:38]
        (['layer4'], 'layer4: the Grad-CAM of the true class')
    """
    collapsed = []
    for name in regularised:
        fraction = diagnostic.get(name, {}).get("positive_fraction")
        if fraction is not None and fraction < threshold:
            collapsed.append(name)
            warnings.warn(f"{name}: the Grad-CAM of the true class is positive at only {100 * fraction:.1f} % of "
                          f"positions (< {100 * threshold:.0f} %): the explanation term is being gamed — the maps "
                          "collapsed instead of moving onto the relevant region (see docs/reff.md).", stacklevel=2)
    return collapsed


def follows_background_rate(predictions: torch.Tensor, labels: torch.Tensor, backgrounds: torch.Tensor,
                            n_backgrounds: int, n_classes: int) -> float | None:
    """Share of predictions that name a class tied to the background, among images whose background is
    tied to a class other than their label (Textured MNIST ties background b to the classes c with
    c mod n_backgrounds = b). ``None`` when no image qualifies.

        rate = |{i : ŷ_i mod B = b_i}| / |{i : y_i mod B ≠ b_i, b_i < C}|   (over the qualifying i)

    Example:
        >>> follows_background_rate(torch.tensor([3, 1, 2, 5]), torch.tensor([0, 1, 2, 4]),
        ...                         torch.tensor([3, 4, 2, 10]), n_backgrounds=11, n_classes=10)
        0.5
    """
    predictions, labels, backgrounds = (t.detach().cpu().long() for t in (predictions, labels, backgrounds))
    qualifies = (labels % n_backgrounds != backgrounds) & (backgrounds < n_classes)
    if not bool(qualifies.any()):
        return None
    return float((predictions[qualifies] % n_backgrounds == backgrounds[qualifies]).float().mean())

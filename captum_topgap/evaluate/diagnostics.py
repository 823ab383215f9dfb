"""Is an explanation regulariser moving evidence, or gaming its own term? Measures of what it should move.

ReFF penalises the (ReLU'd) Grad-CAM of the true class outside the relevant region. A network can make
that term vanish without looking at the object: if the signed map M_l = Σ_k α_k A_k is negative
everywhere, the ReLU makes it zero (docs/reff.md). Two numbers per layer tell the cases apart:

    positive fraction  = share of positions (i, j) with M_l(i, j) > 0          (≈ 0: the map collapsed)
    in-mask share      = Σ_p ReLU(M'_l)(p) s(p) / Σ_p ReLU(M'_l)(p)            (M'_l: M_l upsampled to the image)

both for the plain logit of the true class, on images whose relevant region s is known. The in-mask
share of a map spread evenly over the image is the mask's area (``mask_area``), which is also all a
layer of 2 × 2 positions can reach; judge localisation at a layer with at least 6 × 6 positions.

A Top-GAP network decides by the k positions its pooling keeps. :func:`topk_evidence` says where they lie
and which stage of its fused map put them there:

    on the object = mean over images of the mask's coverage of the k kept positions of the true class's map
    stage share_s = Σ_i Σ_{p ∈ top-k_i} E_s(i, p) / Σ_{s'} Σ_i Σ_{p ∈ top-k_i} E_{s'}(i, p)

with E_s stage s's part of the class map (:meth:`~captum_topgap.models.TopGAPNet.stage_cams`); the shares are
signed and sum to 1 (a stage that lowers the score there has a negative share). Positions
picked at random cover the mask's area; a map whose kept positions come from a stage with few positions
(a ResNet's ``layer4`` is 2 × 2 at 48 px) is chosen by that stage's coarse grid.

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

from captum_topgap._checks import check_images, check_mask, check_target
from captum_topgap._state import preserved_state
from captum_topgap.methods.gradcam import grad_cam_maps
from captum_topgap.models.topgap_net import TopGAPNet
from captum_topgap.pooling import kept_positions


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


class TopKEvidence(TypedDict):
    """Where a Top-GAP network's kept positions lie, and which stage chose them (see the module docstring)."""

    on_object: float
    mask_area: float
    positions: int
    stage_share: dict[str, float]
    stage_positions: dict[str, int]


def topk_evidence(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  masks: torch.Tensor) -> TopKEvidence:
    """The mask's mean coverage of the k positions a Top-GAP network pools for the true class, the masks' mean
    area (what random positions cover), the CAM's positions h·w, and per fused stage its share of the class
    score at those positions and its own positions (before the top-down path upsamples it to h·w).

    The model runs in eval mode and is restored exactly (state contract).

    Example:
        >>> import timm
        >>> model = timm.create_model("topgap_resnet18", num_classes=3, k=4)
        >>> masks = torch.zeros(2, 1, 64, 64)
        >>> evidence = topk_evidence(model, torch.rand(2, 3, 64, 64), torch.tensor([0, 2]), masks)
        >>> evidence["on_object"], list(evidence["stage_share"])
        (0.0, ['layer1', 'layer2', 'layer3', 'layer4'])
    """
    if not isinstance(model, TopGAPNet):
        raise TypeError(f"topk_evidence needs a Top-GAP network (timm.create_model('topgap_resnet18', ...)), got "
                        f"{type(model).__name__}.")
    images = check_images(images, model, "images")
    labels = check_target(labels, len(images), model.num_classes, "labels").to(images.device)
    masks = check_mask(masks, images, "masks").to(images.device)
    with preserved_state(model), torch.no_grad():
        model.eval()
        parts = model.stage_cams(images)
        features = model.backbone(images[:1])
    stages = [features[i] for i in model.stages]
    h, w = parts.shape[-2:]
    rows = torch.arange(len(images), device=images.device)
    parts = parts[rows, :, labels].flatten(2)  # (N, S + 1, h·w)
    k = kept_positions(h * w, model.pool.count, model.pool.fraction)
    top = parts.sum(1).topk(k, dim=1).indices
    coverage = F.adaptive_avg_pool2d(masks, (h, w)).flatten(1).gather(1, top)
    scores = parts[:, :-1].gather(2, top[:, None].expand(-1, parts.shape[1] - 1, -1)).sum((0, 2))
    names = [model.feature_info[i]["module"].removeprefix("backbone.") for i in model.stages]
    return {"on_object": float(coverage.mean()), "mask_area": float(masks.mean()), "positions": h * w,
            "stage_share": {name: float(score / scores.sum()) for name, score in zip(names, scores, strict=True)},
            "stage_positions": {name: stage.shape[-2] * stage.shape[-1] for name, stage in zip(names, stages,
                                                                                              strict=True)}}


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


BACKGROUND_GROUPS = ("agrees", "conflicts", "neutral")
"""The groups of :func:`background_groups`, by id."""


def background_groups(labels: torch.Tensor, backgrounds: torch.Tensor, n_backgrounds: int,
                      n_classes: int) -> torch.Tensor:
    """Waterbirds-style groups of a Textured MNIST split whose background is random (p = 1): 0 (``agrees``) when
    the background is the one tied to the label in training, 1 (``conflicts``) when it is tied to another class,
    2 (``neutral``) when it is tied to none (background b ≥ the number of classes).

        g_i = 0 if b_i = y_i mod B,  1 if b_i ≠ y_i mod B and b_i < C,  2 otherwise

    With :func:`captum_topgap.data.group_accuracy` the worst of the three is the worst-group accuracy, as
    Waterbirds reports it over its (bird, place) groups.

    Example:
        >>> background_groups(torch.tensor([0, 1, 2]), torch.tensor([0, 4, 10]), n_backgrounds=11, n_classes=10)
        tensor([0, 1, 2])
    """
    labels, backgrounds = (t.detach().cpu().long() for t in (labels, backgrounds))
    if labels.shape != backgrounds.shape:
        raise ValueError(f"`labels` {tuple(labels.shape)} and `backgrounds` {tuple(backgrounds.shape)} must have one "
                         "entry per image each.")
    agrees = backgrounds == labels % n_backgrounds
    return torch.where(agrees, 0, torch.where(backgrounds < n_classes, 1, 2))

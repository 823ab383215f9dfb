"""Expansion CAM (High-Resolution CAM, Tagaris et al., ICIP 2019): low-res CAM, high-res CAM, refinement.

    low-res CAM_c  = Σ_k W_k^c A_k          (the localisation network's last feature maps)
    high-res CAM_c = Σ_k W_k^c A_k^high     (the expansion network's maps at input size)

Refinement, one small function per step with the authors' default in its signature:

1. min-max normalise both maps; the low-res CAM is upsampled bilinearly to the input size;
2. blur the high-res CAM (5 × 5 box) and take its Sobel gradient magnitude G;
3. ROI = upsampled low-res CAM above its 85th percentile;
4. growth bounds = 25th / 75th percentile of G inside the ROI;
5. seeds (focal points) = the round(√H) highest pixels of the upsampled low-res CAM;
6. connected-threshold region growing on G from the seeds within the bounds;
7. add the ROI's edges — the gradient's strong pixels (G ≥ the upper bound) inside the ROI, as the authors' code
   (djib2011/high-res-mapping, ``postprocessing.py``) draws them; fill holes smaller than 256 px;
8. refined = 0.5 · filled + 0.5 · low-res (both normalised).

The authors' code runs at 224 px (its ``--im_size``): the seed count is √224 there, derived from the size, while the
5 × 5 blur and the 256-px hole area are constants in pixels of a 224-px image. :func:`scaled_options` carries those two
to another image size (blur ∝ H, hole area ∝ H²).

Example:
    >>> low = np.zeros((16, 16)); low[4:12, 4:12] = 1.0
    >>> steps = refine(low, low.copy(), hole_area=4)
    >>> sorted(steps)[:4], steps["refined"].shape
    (['blurred', 'bounds', 'edged', 'filled'], (16, 16))
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from captum_topgap._checks import TargetType, check_bool, check_choice, check_float, check_images, check_int
from captum_topgap._layers import linear_classifier
from captum_topgap._state import preserved_state
from captum_topgap.attribution import MethodAttribution, upsample_to
from captum_topgap.methods.cam import weighted_maps
from captum_topgap.models.expansion import ExpansionNet
from captum_topgap.registry import register_method


def minmax(a: np.ndarray) -> np.ndarray:
    """(a − min) / (max − min); a constant map becomes zeros.

    Example:
        >>> minmax(np.array([1.0, 3.0])).tolist()
        [0.0, 1.0]
    """
    span = a.max() - a.min()
    return (a - a.min()) / span if span > 0 else np.zeros_like(a, dtype=float)


def box_blur(a: np.ndarray, size: int = 5) -> np.ndarray:
    """Mean over a size × size window (edges replicated).

    Example:
        >>> box_blur(np.eye(3), size=3)[1, 1].round(4)
        np.float64(0.3333)
    """
    return ndimage.uniform_filter(a.astype(float), size=size, mode="nearest")


def sobel_magnitude(a: np.ndarray) -> np.ndarray:
    """√(S_x² + S_y²) with 3 × 3 Sobel kernels.

    Example:
        >>> sobel_magnitude(np.tile([0.0, 0.0, 1.0, 1.0], (4, 1)))[1].tolist()
        [0.0, 4.0, 4.0, 0.0]
    """
    return np.hypot(ndimage.sobel(a, axis=0, mode="nearest"), ndimage.sobel(a, axis=1, mode="nearest"))


def region_of_interest(low: np.ndarray, percentile: float = 85) -> np.ndarray:
    """Pixels of the (upsampled) low-res CAM above its ``percentile``.

    Example:
        >>> region_of_interest(np.arange(10.0), percentile=80).nonzero()[0].tolist()
        [8, 9]
    """
    return low > np.percentile(low, percentile)


def growth_bounds(gradient: np.ndarray, roi: np.ndarray, percentiles: tuple[float, float] = (25, 75)
                  ) -> tuple[float, float]:
    """Lower and upper percentile of the gradient inside the ROI (the whole map if the ROI is empty).

    Example:
        >>> growth_bounds(np.arange(5.0), np.ones(5, bool), (25, 75))
        (1.0, 3.0)
    """
    values = gradient[roi] if roi.any() else gradient.ravel()
    low, high = np.percentile(values, percentiles)
    return float(low), float(high)


def focal_points(low: np.ndarray, count: int | None = None) -> np.ndarray:
    """(count, 2) row/column indices of the highest pixels; count = round(√H) by default.

    Example:
        >>> focal_points(np.array([[0.0, 5.0], [9.0, 1.0]]), count=1).tolist()
        [[1, 0]]
    """
    count = round(np.sqrt(low.shape[0])) if count is None else count
    flat = np.argsort(low.ravel(), kind="stable")[::-1][:count]
    return np.stack(np.unravel_index(flat, low.shape), axis=1)


def region_growing(image: np.ndarray, seeds: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Connected-threshold region growing: pixels 4-connected to a seed through values in [lower, upper].

    Example:
        >>> image = np.array([[1, 1, 9, 1], [1, 1, 9, 1]], dtype=float)
        >>> region_growing(image, np.array([[0, 0]]), 0, 2).astype(int).tolist()
        [[1, 1, 0, 0], [1, 1, 0, 0]]
    """
    inside = (image >= lower) & (image <= upper)
    labels, _ = ndimage.label(inside)
    keep = {int(labels[r, c]) for r, c in seeds if labels[r, c] > 0}
    return np.isin(labels, sorted(keep)) if keep else np.zeros_like(inside)


def roi_edges(gradient: np.ndarray, roi: np.ndarray, upper: float) -> np.ndarray:
    """The edges added to the grown region: pixels of the ROI whose gradient reaches the growth's upper bound.

    Example:
        >>> roi_edges(np.array([[0.0, 5.0, 9.0]]), np.array([[True, True, False]]), 5.0).tolist()
        [[False, True, False]]
    """
    return roi & (gradient >= upper)


def fill_small_holes(mask: np.ndarray, area: int = 256) -> np.ndarray:
    """Fill the holes (background components not touching the border) smaller than ``area`` pixels.

    Example:
        >>> ring = np.ones((5, 5), bool); ring[2, 2] = False
        >>> bool(fill_small_holes(ring, area=2)[2, 2]), bool(fill_small_holes(ring, area=1)[2, 2])
        (True, False)
    """
    holes = ndimage.binary_fill_holes(mask) & ~mask
    labels, count = ndimage.label(holes)
    sizes = ndimage.sum(holes, labels, index=np.arange(1, count + 1))
    small = np.isin(labels, np.arange(1, count + 1)[sizes < area])
    return mask | small


def blend(filled: np.ndarray, low: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """Weight · minmax(filled) + (1 − weight) · minmax(low).

    Example:
        >>> blend(np.array([0.0, 1.0]), np.array([2.0, 0.0]), weight=0.25).tolist()
        [0.75, 0.25]
    """
    return weight * minmax(filled.astype(float)) + (1 - weight) * minmax(low)


def refine(low: np.ndarray, high: np.ndarray, blur_size: int = 5, roi_percentile: float = 85,
           bound_percentiles: tuple[float, float] = (25, 75), n_seeds: int | None = None, hole_area: int = 256,
           weight: float = 0.5) -> dict[str, np.ndarray]:
    """The whole refinement of one image's (upsampled low-res, high-res) CAMs; returns every step."""
    low, high = minmax(low), minmax(high)
    blurred = box_blur(high, blur_size)
    gradient = sobel_magnitude(blurred)
    roi = region_of_interest(low, roi_percentile)
    bounds = growth_bounds(gradient, roi, bound_percentiles)
    seeds = focal_points(low, n_seeds)
    grown = region_growing(gradient, seeds, *bounds)
    edged = grown | roi_edges(gradient, roi, bounds[1])
    filled = fill_small_holes(edged, hole_area)
    return {"low": low, "high": high, "blurred": blurred, "gradient": gradient, "roi": roi,
            "bounds": np.array(bounds), "seeds": seeds, "grown": grown, "edged": edged, "filled": filled,
            "refined": blend(filled, low, weight)}


REFERENCE_SIZE = 224
"""The image size the authors' refinement constants are in pixels of (their code's ``--im_size``)."""


def scaled_options(size: int, reference: int = REFERENCE_SIZE) -> dict[str, int]:
    """The refinement's pixel constants carried from ``reference``-px images to ``size``-px ones: the blur's side
    ∝ size (odd, ≥ 1) and the hole area ∝ size² (≥ 1); the seed count, √H, already follows the size.

    Example:
        >>> scaled_options(224), scaled_options(48)
        ({'blur_size': 5, 'hole_area': 256}, {'blur_size': 1, 'hole_area': 12})
    """
    size = check_int(size, "size", minimum=1)
    nearest_odd = 2 * round((5 * size / reference - 1) / 2) + 1
    return {"blur_size": max(1, nearest_odd), "hole_area": max(1, round(256 * (size / reference) ** 2))}


def check_refine_options(**options: Any) -> dict[str, Any]:
    """The options of :func:`refine`, checked (unknown names refused, each value in its range).

    Example:
        >>> check_refine_options(hole_area=16, weight=0.5)
        {'hole_area': 16, 'weight': 0.5}
    """
    def percentiles(value: object) -> tuple[float, float]:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"`bound_percentiles` must be (low, high) percentiles, got {value!r}.")
        low, high = (check_float(v, "bound_percentiles", minimum=0.0, maximum=100.0) for v in value)
        if low > high:
            raise ValueError(f"`bound_percentiles` must be (low, high) with low ≤ high, got {value!r}.")
        return low, high

    checks: dict[str, Any] = {
        "blur_size": lambda v: check_int(v, "blur_size", minimum=1),
        "roi_percentile": lambda v: check_float(v, "roi_percentile", minimum=0.0, maximum=100.0),
        "bound_percentiles": percentiles,
        "n_seeds": lambda v: None if v is None else check_int(v, "n_seeds", minimum=1),
        "hole_area": lambda v: check_int(v, "hole_area", minimum=0),
        "weight": lambda v: check_float(v, "weight", minimum=0.0, maximum=1.0)}
    unknown = sorted(set(options) - set(checks))
    if unknown:
        raise TypeError(f"'expansion_cam' does not take the option(s) {unknown}; its refinement takes "
                        f"{sorted(checks)}.")
    return {name: checks[name](value) for name, value in options.items()}


PIPELINE = ("low", "high", "blurred", "roi", "grown", "edged", "filled", "refined")
"""The steps of :func:`refine` that are maps of the object, in order (scored step by step in docs/expansion_cam.md)."""
COMPUTED_FROM = {"high": "low", "blurred": "high", "roi": "low", "grown": "blurred", "edged": "grown",
                 "filled": "edged", "refined": "filled"}
"""The map each step of :data:`PIPELINE` is computed from: the expansion network expands the features A whose CAM
is the low-res map; the region grows on the blurred high-res CAM's gradient from the low-res CAM's seeds; the
refined map blends the filled region with the low-res CAM."""


def pipeline_maps(model: ExpansionNet, inputs: torch.Tensor, target: torch.Tensor,
                  **refine_options: Any) -> dict[str, torch.Tensor]:
    """Every step of :data:`PIPELINE` for ``target``, each (N, 1, H, W) at the input's size: the low-res CAM
    (upsampled), the high-res CAM and the refinement's intermediate maps (binary ones as 0/1).

    Example:
        >>> import timm
        >>> from captum_topgap.models.expansion import ExpansionNet
        >>> net = ExpansionNet(timm.create_model("resnet18", num_classes=3))
        >>> maps = pipeline_maps(net, torch.rand(2, 3, 64, 64), torch.tensor([0, 2]), hole_area=16)
        >>> list(maps) == list(PIPELINE), tuple(maps["grown"].shape)
        (True, (2, 1, 64, 64))
    """
    refine_options = check_refine_options(**refine_options)
    fc = linear_classifier(model.localizer)
    with torch.no_grad():
        low = weighted_maps(fc, target, model.encode(inputs)[1][-1])
        high = weighted_maps(fc, target, model.expand(inputs)[0])
    if low.shape[-2] * low.shape[-1] == 1:
        warnings.warn(f"the localizer's last stage is 1 × 1 for {tuple(inputs.shape[-2:])} inputs: the low-resolution "
                      "CAM is constant, and so are the region of interest and the refined map; use larger inputs.",
                      stacklevel=3)
    low_up = upsample_to(low, inputs.shape[-2:])
    steps = [refine(a[0].cpu().double().numpy(), b[0].cpu().double().numpy(), **refine_options)
             for a, b in zip(low_up, high, strict=True)]
    maps = {name: torch.from_numpy(np.stack([step[name].astype(float) for step in steps])).unsqueeze(1).to(inputs)
            for name in PIPELINE[2:]}
    return {"low": low_up, "high": high, **maps}


def expansion_cams(model: ExpansionNet, inputs: torch.Tensor, target: torch.Tensor,
                   **refine_options: Any) -> dict[str, torch.Tensor]:
    """Low-res (upsampled), high-res and refined CAMs of ``target``, each (N, 1, H, W), from an ExpansionNet.

    Example:
        >>> import timm
        >>> from captum_topgap.models.expansion import ExpansionNet
        >>> net = ExpansionNet(timm.create_model("resnet18", num_classes=3))
        >>> maps = expansion_cams(net, torch.rand(2, 3, 32, 32), torch.tensor([0, 2]), hole_area=16)
        >>> {name: tuple(m.shape) for name, m in maps.items()}
        {'low': (2, 1, 32, 32), 'high': (2, 1, 32, 32), 'refined': (2, 1, 32, 32)}
    """
    maps = pipeline_maps(model, inputs, target, **refine_options)
    return {name: maps[name] for name in ("low", "high", "refined")}


@register_method("expansion_cam", origin="captum-topgap", kind="model", aliases=("high_resolution_cam",),
                 description="Expansion (High-Resolution) CAM: expansion network + refinement (Tagaris et al.)")
class ExpansionCAM(MethodAttribution):
    """Expansion CAM as a Captum attribution (named so to avoid confusion with grad-cam's ``HiResCAM``).

    Args:
        model: the localisation network (GAP + FC), or an :class:`~captum_topgap.models.ExpansionNet`.
        expansion: the trained ``ExpansionNet`` over ``model`` (not needed when ``model`` is one).
        output: ``"refined"`` (default), ``"high"`` or ``"low"`` (the upsampled low-res CAM).
        upsample: taken for the contract's sake; every output is at the input's resolution already.
        refine_options: ``blur_size``, ``roi_percentile``, ``bound_percentiles``, ``n_seeds``, ``hole_area``,
            ``weight`` of :func:`refine`.

    Example:
        >>> import timm
        >>> from captum_topgap.models import ExpansionNet
        >>> localizer = timm.create_model("resnet18", num_classes=3)
        >>> cam = ExpansionCAM(localizer, ExpansionNet(localizer), hole_area=16)
        >>> cam.attribute(torch.rand(2, 3, 32, 32), target=[0, 2]).shape
        torch.Size([2, 1, 32, 32])
        >>> sorted(cam.attribute_all(torch.rand(1, 3, 32, 32), target=1))
        ['high', 'low', 'refined']
    """

    method_name = "expansion_cam"
    outputs = ("refined", "high", "low")
    takes_forward_args = False

    def __init__(self, model: nn.Module, expansion: ExpansionNet | None = None, layer: None = None,
                 output: str = "refined", upsample: bool = True, **refine_options: Any) -> None:
        if layer is not None:
            raise ValueError("`layer` is not used by 'expansion_cam': it reads the expansion network; leave it None.")
        expansion = model if isinstance(model, ExpansionNet) else expansion
        if not isinstance(expansion, ExpansionNet) or (expansion is not model and expansion.localizer is not model):
            raise ValueError("'expansion_cam' needs `expansion=`: an ExpansionNet built over this model (train one "
                             "with `captum-topgap train --method expansion --localizer CKPT`), or pass the "
                             "ExpansionNet itself as the model.")
        check_choice(output, "output", self.outputs)
        check_bool(upsample, "upsample")
        super().__init__(expansion)
        self.expansion, self.output = expansion, output
        self.refine_options = check_refine_options(**refine_options)

    def attribute_all(self, inputs: torch.Tensor, target: TargetType = None) -> dict[str, torch.Tensor]:
        """``{"low", "high", "refined"}`` maps (N, 1, H, W) of ``target`` from one pass."""
        inputs = check_images(inputs, self.model)
        with preserved_state(self.model):
            return expansion_cams(self.expansion, inputs, self.labels(inputs, target), **self.refine_options)

    def _attribute(self, inputs: torch.Tensor, labels: torch.Tensor, output: str | None = None) -> torch.Tensor:
        chosen = self.output if output is None else check_choice(output, "output", self.outputs)
        return expansion_cams(self.expansion, inputs, labels, **self.refine_options)[str(chosen)]

"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das and Saenko, BMVC 2018).

    S_c(x) = 1 / (N · p) · Σ_{m=1..N} P(c | x ⊙ M_m) · M_m

Each mask M_m is a random binary grid of ⌈H / s⌉ + 1 cells (kept with probability p, cell size s),
upsampled bilinearly to (⌈H / s⌉ + 1) · s pixels and cropped at a random shift in [0, s) — smooth masks
that do not align with one grid. The masks depend only on (N, p, s, input size, seed); they are made
once and reused, and the masked copies go through the model ``batch_size`` at a time.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    >>> rise(net, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), n_masks=16, cell_size=4).shape
    torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import check_float, check_int
from captum_topgap.attribution import MethodAttribution
from captum_topgap.registry import register_method


def check_rise_options(**options: Any) -> dict[str, Any]:
    """RISE's options, checked: ``n_masks``, ``cell_size``, ``batch_size`` ≥ 1, ``seed`` ≥ 0, ``p`` in (0, 1].

    Example:
        >>> check_rise_options(n_masks=8, p=0.5)
        {'n_masks': 8, 'p': 0.5}
    """
    def check(name: str, value: object) -> object:
        if name == "p":
            return check_float(value, "p", minimum=0.0, maximum=1.0, strict_minimum=True)
        return check_int(value, name, minimum=0 if name == "seed" else 1)

    return {name: check(name, value) for name, value in options.items()}


@lru_cache(maxsize=8)
def rise_masks(n_masks: int, p: float, cell_size: int, height: int, width: int, seed: int) -> torch.Tensor:
    """(n_masks, 1, H, W) float masks in [0, 1]; cached per arguments, so one seed gives the same masks.

    Example:
        >>> masks = rise_masks(4, 0.5, 2, 6, 6, seed=0)
        >>> masks.shape, torch.equal(masks, rise_masks(4, 0.5, 2, 6, 6, seed=0))
        (torch.Size([4, 1, 6, 6]), True)
    """
    check_rise_options(n_masks=n_masks, p=p, cell_size=cell_size, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    cells = (-(-height // cell_size) + 1, -(-width // cell_size) + 1)
    grid = (torch.rand(n_masks, 1, *cells, generator=generator) < p).float()
    up = F.interpolate(grid, size=(cells[0] * cell_size, cells[1] * cell_size), mode="bilinear", align_corners=False)
    shifts = torch.randint(0, cell_size, (n_masks, 2), generator=generator)
    return torch.stack([up[m, :, dy:dy + height, dx:dx + width] for m, (dy, dx) in enumerate(shifts.tolist())])


def rise(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, n_masks: int = 1000, p: float = 0.5,
         cell_size: int = 8, batch_size: int = 100, seed: int = 0) -> torch.Tensor:
    """RISE saliency (N, 1, H, W) of ``target`` (N,) with softmax probabilities as the class score."""
    check_rise_options(batch_size=batch_size)
    masks = rise_masks(n_masks, p, cell_size, inputs.shape[-2], inputs.shape[-1], seed).to(inputs)
    saliency = torch.zeros(inputs.shape[0], 1, *inputs.shape[-2:], dtype=inputs.dtype, device=inputs.device)
    with torch.no_grad():
        for index, (image, label) in enumerate(zip(inputs, target, strict=True)):
            for chunk in masks.split(batch_size):
                probability = model(image * chunk).softmax(dim=1)[:, label]
                saliency[index] += (probability.view(-1, 1, 1, 1) * chunk).sum(dim=0)
    return saliency / (n_masks * p)


@register_method("rise", origin="captum-topgap", kind="pixel",
                 description="RISE: class probability under random upsampled binary masks (Petsiuk et al.)")
class RISE(MethodAttribution):
    """RISE as a Captum attribution, (N, 1, H, W). Options (set here or per call): ``n_masks``, ``p`` (keep
    probability), ``cell_size`` (pixels per low-resolution cell), ``batch_size`` (masked copies per forward),
    ``seed`` (the masks are generated once per input size and seed and reused).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
        >>> RISE(net, n_masks=8, cell_size=4).attribute(torch.rand(1, 3, 8, 8), target=1).shape
        torch.Size([1, 1, 8, 8])
    """

    method_name = "rise"

    def __init__(self, model: nn.Module, layer: None = None, n_masks: int = 1000, p: float = 0.5,
                 cell_size: int = 8, batch_size: int = 100, seed: int = 0) -> None:
        super().__init__(model, layer)
        self.options = check_rise_options(n_masks=n_masks, p=p, cell_size=cell_size, batch_size=batch_size, seed=seed)

    def _attribute(self, inputs: torch.Tensor, labels: torch.Tensor, n_masks: int | None = None,
                   p: float | None = None, cell_size: int | None = None, batch_size: int | None = None,
                   seed: int | None = None) -> torch.Tensor:
        given = {"n_masks": n_masks, "p": p, "cell_size": cell_size, "batch_size": batch_size, "seed": seed}
        options = {**self.options, **{name: value for name, value in given.items() if value is not None}}
        return rise(self.network, inputs, labels, **options)

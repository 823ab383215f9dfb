"""Differentiable Grad-CAM at several layers from one forward and one backward (Selvaraju et al., 2017).

    α_k^l = mean_{i,j} ∂y_c / ∂A_k^l(i, j),      I_l = ReLU(Σ_k α_k^l A_k^l),      I'_l = up(I_l)

``weighting="positive"`` is the lecture's "sharpened" Grad-CAM: α_k^l = mean_{i,j} ReLU(∂y_c / ∂A_k^l(i, j)),
so only evidence that raises the class score weights a channel.

``create_graph=True`` keeps the graph of the gradients, so a loss on I'_l back-propagates to the weights
(double back-propagation, as ReFF needs). The model's train/eval mode is left as it is: the caller
decides (ReFF runs inside a training step).

Example:
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> logits, maps = grad_cam_maps(net, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), [net[0], net[1]])
    >>> tuple(logits.shape), [tuple(m.shape) for m in maps]
    ((2, 2), [(2, 1, 8, 8), (2, 1, 8, 8)])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def grad_cam_maps(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, layers: Sequence[nn.Module],
                  create_graph: bool = False, upsample: bool = True,
                  weighting: str = "mean") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits (N, C) and one Grad-CAM (N, 1, H, W) per layer (layer resolution with ``upsample=False``);
    ``weighting`` is ``"mean"`` (Grad-CAM) or ``"positive"`` (mean of the positive gradients)."""
    if weighting not in ("mean", "positive"):
        raise ValueError(f"`weighting` must be 'mean' or 'positive', got {weighting!r}")
    captured: list[torch.Tensor | None] = [None] * len(layers)

    def keep(index: int):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            captured[index] = output
        return hook

    handles = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(layers)]
    try:
        with torch.enable_grad():
            logits = model(inputs)
            missing = [i for i, a in enumerate(captured) if a is None or a.dim() != 4]
            if missing:
                raise ValueError(f"`layers` {missing} produced no spatial (N, C, h, w) output in the forward pass.")
            score = logits.gather(1, target.view(-1, 1)).sum()
            grads = torch.autograd.grad(score, captured, create_graph=create_graph)
    finally:
        for handle in handles:
            handle.remove()
    maps = []
    for activation, grad in zip(captured, grads, strict=True):
        weights = (F.relu(grad) if weighting == "positive" else grad).mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
        if upsample:
            cam = F.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
        maps.append(cam if create_graph else cam.detach())
    return logits, maps

"""Effective receptive field (Luo et al., 2016), as used by the Top-GAP poster.

    ERF(x) = Σ_channels |∂ out / ∂ x|

for an output that is a class logit (:func:`erf`) or one position (i, j) of a layer's output, summed
over the layer's channels (:func:`erf_at`). Many positions are computed in one backward pass: the
image is replicated once per position and each copy's own position is summed into one scalar (images
do not interact in eval mode, so each copy's input gradient is that position's ERF).

Example:
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1, bias=False))
    >>> _ = torch.nn.init.ones_(net[0].weight)
    >>> erf_at(net, torch.rand(1, 1, 5, 5), net[0], [(2, 2)])[0, 0].sum().item()
    9.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from captum_topgap._checks import TargetType, check_target
from captum_topgap.attribution import MethodAttribution, capture
from captum_topgap.registry import register_method


def erf(model: nn.Module, inputs: torch.Tensor, target: TargetType) -> torch.Tensor:
    """ERF of the ``target`` logits: Σ_c |∂y_target/∂x_c| as (N, 1, H, W)."""
    with torch.enable_grad():
        x = inputs.detach().requires_grad_(True)
        logits = model(x)
        labels = check_target(target, len(inputs), logits.shape[1]).to(logits.device)
        picked = logits.gather(1, labels.view(-1, 1)).sum()
        grad = torch.autograd.grad(picked, x)[0]
    return grad.abs().sum(dim=1, keepdim=True)


def erf_at(model: nn.Module, inputs: torch.Tensor, layer: nn.Module,
           positions: Sequence[tuple[int, int]]) -> torch.Tensor:
    """ERF of positions (i, j) of ``layer``'s output (summed over its channels): (N, P, H, W), one backward."""
    if not positions:
        raise ValueError("`positions` is empty; pass at least one (i, j) of the layer's output.")
    n, p = inputs.shape[0], len(positions)
    rows = torch.tensor([i for i, _ in positions], device=inputs.device).repeat(n)
    cols = torch.tensor([j for _, j in positions], device=inputs.device).repeat(n)
    with torch.enable_grad():
        x = inputs.detach().repeat_interleave(p, 0).requires_grad_(True)
        with capture([layer]) as seen:
            model(x)
        out = seen.ready()[0]
        if out.dim() != 4:
            raise ValueError(f"`layer` output has shape {tuple(out.shape)}; erf_at needs a spatial map.")
        h, w = out.shape[-2:]
        if int(rows.max()) >= h or int(cols.max()) >= w or int(rows.min()) < 0 or int(cols.min()) < 0:
            raise ValueError(f"`positions` must lie inside the layer's {h} × {w} output, got {list(positions)}.")
        selected = out[torch.arange(n * p, device=out.device), :, rows, cols].sum()
        grad = torch.autograd.grad(selected, x)[0]
    return grad.abs().sum(dim=1).view(n, p, *inputs.shape[-2:])


@register_method("erf", origin="captum-topgap", kind="pixel",
                 description="effective receptive field Σ_c |∂y/∂x_c| of the target logit")
class ERF(MethodAttribution):
    """Effective receptive field of the target logit as a Captum attribution: Σ_c |∂y/∂x_c|, (N, 1, H, W).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> ERF(net).attribute(torch.rand(1, 1, 2, 2), target=0).shape
        torch.Size([1, 1, 2, 2])
    """

    method_name = "erf"

    def _attribute(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return erf(self.network, inputs, labels)

"""Class Activation Mapping (Zhou et al., CVPR 2016) for networks that end in global average pooling + FC.

    M_c(x, y) = Σ_k w_k^c f_k(x, y)

with f_k the last spatial feature maps and w^c the classifier row of class c (no bias). The classifier
is timm's ``get_classifier()`` or else the last ``nn.Linear``; the GAP+FC structure is verified on the
forward it runs: the logits must equal FC(GAP(f)).

Example:
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
    ...                           torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> class_activation_map(net, net[0], torch.rand(2, 3, 6, 6), torch.tensor([0, 1])).shape
    torch.Size([2, 1, 4, 4])
"""

from __future__ import annotations

import torch
from torch import nn


def linear_classifier(model: nn.Module) -> nn.Linear:
    """The final linear layer: ``model.get_classifier()`` when it is one, else the last ``nn.Linear``."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("CAM needs a network ending in global average pooling + a linear classifier; this model "
                         "has no nn.Linear. Use 'gradcam' (any CNN) or 'topgap_cam' (Top-GAP models).")
    return linears[-1]


def class_activation_map(model: nn.Module, layer: nn.Module, inputs: torch.Tensor,
                         target: torch.Tensor) -> torch.Tensor:
    """CAM of ``target`` (N,) at ``layer``'s resolution: (N, 1, h, w)."""
    fc = linear_classifier(model)
    captured: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.__setitem__("f", out))
    try:
        with torch.no_grad():
            logits = model(inputs)
    finally:
        handle.remove()
    features = captured["f"]
    if features.shape[1] != fc.in_features or not torch.allclose(
            fc(features.mean(dim=(2, 3))), logits, rtol=1e-4, atol=1e-4):
        raise ValueError("CAM needs a GAP+FC network: the logits are not FC(global-average-pool(layer output)) "
                         f"for layer {type(layer).__name__}. Pass the last feature block as `layer`, or use "
                         "'gradcam', which works for any CNN.")
    with torch.no_grad():
        return weighted_maps(fc, target, features)


def weighted_maps(fc: nn.Linear, target: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Σ_k w_k^c f_k: the classifier rows of ``target`` (N,) over feature maps (N, K, h, w) -> (N, 1, h, w).

    Example:
        >>> fc = torch.nn.Linear(2, 2, bias=False)
        >>> _ = fc.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        >>> weighted_maps(fc, torch.tensor([1]), torch.ones(1, 2, 1, 1)).item()
        2.0
    """
    return torch.einsum("nk,nkhw->nhw", fc.weight[target], features).unsqueeze(1)

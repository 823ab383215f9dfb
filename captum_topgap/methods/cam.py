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

from captum_topgap._layers import linear_classifier
from captum_topgap.attribution import ForwardWithArgs, LayerMethod, capture
from captum_topgap.registry import register_method


def weighted_maps(fc: nn.Linear, target: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Σ_k w_k^c f_k: the classifier rows of ``target`` (N,) over feature maps (N, K, h, w) -> (N, 1, h, w).

    Example:
        >>> fc = torch.nn.Linear(2, 2, bias=False)
        >>> _ = fc.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        >>> weighted_maps(fc, torch.tensor([1]), torch.ones(1, 2, 1, 1)).item()
        2.0
    """
    return torch.einsum("nk,nkhw->nhw", fc.weight[target], features).unsqueeze(1)


def class_activation_map(model: nn.Module, layer: nn.Module, inputs: torch.Tensor,
                         target: torch.Tensor) -> torch.Tensor:
    """CAM of ``target`` (N,) at ``layer``'s resolution: (N, 1, h, w)."""
    fc = linear_classifier(model.model if isinstance(model, ForwardWithArgs) else model)
    with torch.no_grad(), capture([layer]) as seen:
        logits = model(inputs)
    features = seen.ready()[0]
    if features.dim() != 4 or features.shape[1] != fc.in_features or not torch.allclose(
            fc(features.mean(dim=(2, 3))), logits, rtol=1e-4, atol=1e-4):
        raise ValueError("CAM needs a GAP+FC network: the logits are not FC(global-average-pool(layer output)) "
                         f"for layer {type(layer).__name__}. Pass the last feature block as `layer`, or use "
                         "'gradcam', which works for any CNN.")
    with torch.no_grad():
        return weighted_maps(fc, target, features)


@register_method("cam", origin="captum-topgap", kind="layer",
                 description="CAM: classifier weights × last feature maps of a GAP+FC network (Zhou et al.)")
class CAM(LayerMethod):
    """Class Activation Mapping as a Captum attribution: (N, 1, H, W), M_c = Σ_k w_k^c f_k upsampled.

    Example:
        >>> import timm
        >>> CAM(timm.create_model("resnet18", num_classes=3)).attribute(torch.rand(1, 3, 64, 64), target=2).shape
        torch.Size([1, 1, 64, 64])
    """

    method_name = "cam"
    supports_reshape = False  # GAP + FC over a feature map: a transformer's class token is neither

    def core(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CAM of ``labels`` at the layer's resolution."""
        return class_activation_map(self.network, self.layer, inputs, labels)

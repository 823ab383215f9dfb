"""Perception Visualization (Giulivi, Carman and Boracchi, BMVC 2021): where the model looks and what it sees there.

Grad-CAM answers *where*; the decoder D of :class:`~captum_topgap.models.PerceptionDecoder` answers *what*:
x̂ = D(E(x)) is the image as the representation at layer L holds it. PV shows the reconstruction where the
class's Grad-CAM at the same layer is high and a neutral grey elsewhere (our combination; the paper says only
that saliency maps and reconstructions "are then combined"):

    s_c = minmax(up(ReLU(Σ_k α_k^c A_k)))      (Grad-CAM at L, min-max normalised to [0, 1]; 0 if constant)
    PV(x, c) = s_c ⊙ D(E(x)) + (1 − s_c) ⊙ g,        g = 0.5 (grey)

One forward to L and on to the logits, one backward to L (Grad-CAM), one decoder pass on the A_k captured by
that same forward.

Example:
    >>> import timm
    >>> from captum_topgap.models import PerceptionDecoder
    >>> decoder = PerceptionDecoder(timm.create_model("resnet18", num_classes=3), image_size=32)
    >>> PerceptionVisualization(decoder).attribute(torch.rand(2, 3, 32, 32), target=[0, 2]).shape
    torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

import torch
from torch import nn

from captum_topgap._checks import TargetType, check_bool, check_float, check_images
from captum_topgap._hooks import capture, forward_hooks
from captum_topgap._layers import resolve_layer
from captum_topgap._state import preserved_state
from captum_topgap.attribution import MethodAttribution
from captum_topgap.methods.gradcam import Score, check_score, grad_cam_maps
from captum_topgap.models.perception import PerceptionDecoder
from captum_topgap.registry import register_method

GREY = 0.5
"""g: the neutral colour PV shows where the class's Grad-CAM is zero."""


def unit_saliency(cam: torch.Tensor) -> torch.Tensor:
    """Saliency s = (r − min r) / (max r − min r) per image with r = ReLU(cam), in [0, 1] (min-max, as Grad-CAM
    is shown); a constant map (no evidence anywhere, or the same everywhere) is zero.

    Example:
        >>> unit_saliency(torch.tensor([[[[-1.0, 2.0, 4.0]]]])).flatten().tolist()
        [0.0, 0.5, 1.0]
        >>> unit_saliency(torch.tensor([[[[1.0, 2.0, 3.0]]]])).flatten().tolist()
        [0.0, 0.5, 1.0]
    """
    cam = cam.clamp_min(0)
    low = cam.flatten(1).amin(1).view(-1, 1, 1, 1)
    span = cam.flatten(1).amax(1).view(-1, 1, 1, 1) - low
    return torch.where(span > 0, (cam - low) / span.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))


def perception_visualization(reconstruction: torch.Tensor, saliency: torch.Tensor, grey: float = GREY) -> torch.Tensor:
    """PV = s ⊙ x̂ + (1 − s) ⊙ g for a reconstruction x̂ (N, C, H, W) and a saliency s (N, 1, H, W) in [0, 1].

    Example:
        >>> pv = perception_visualization(torch.ones(1, 3, 1, 2), torch.tensor([[[[1.0, 0.0]]]]))
        >>> pv[0, :, 0].tolist()
        [[1.0, 0.5], [1.0, 0.5], [1.0, 0.5]]
    """
    if saliency.shape[0] != reconstruction.shape[0] or saliency.shape[-2:] != reconstruction.shape[-2:]:
        raise ValueError(f"`saliency` {tuple(saliency.shape)} must match the reconstruction "
                         f"{tuple(reconstruction.shape)} in batch and size.")
    return saliency * reconstruction + (1 - saliency) * grey


def perception_maps(decoder: PerceptionDecoder, inputs: torch.Tensor, labels: torch.Tensor,
                    score: Score = "logit", grey: float = GREY) -> dict[str, torch.Tensor]:
    """``{"gradcam": s_c (N, 1, H, W), "reconstruction": x̂ (N, C, H, W), "pv": PV (N, C, H, W)}`` from one
    forward, one backward to L and one decoder pass.

    Example:
        >>> import timm
        >>> decoder = PerceptionDecoder(timm.create_model("resnet18", num_classes=3), image_size=32)
        >>> maps = perception_maps(decoder, torch.rand(1, 3, 32, 32), torch.tensor([1]))
        >>> {name: tuple(m.shape) for name, m in maps.items()}
        {'gradcam': (1, 1, 32, 32), 'reconstruction': (1, 3, 32, 32), 'pv': (1, 3, 32, 32)}
    """
    decoder.check_size(inputs)
    with forward_hooks([decoder.layer], _trace_from_layer), capture([decoder.layer]) as seen:
        _, (cam,) = grad_cam_maps(decoder.classifier, inputs, labels, [decoder.layer], score=score)
    with torch.no_grad():
        latent = seen.ready()[0].detach().contiguous(memory_format=torch.channels_last)
        reconstruction = decoder.decode(latent).contiguous()
    saliency = unit_saliency(cam)
    return {"gradcam": saliency, "reconstruction": reconstruction,
            "pv": perception_visualization(reconstruction, saliency, grey)}


def _trace_from_layer(_module: nn.Module, _inputs: object, output: object) -> object:
    """Start autograd at L: the frozen layers before it run without recording a graph (a copy, so that an
    in-place activation after L does not write into what the hook returned).
    """
    return output.detach().requires_grad_(True).clone() if isinstance(output, torch.Tensor) else None


@register_method("perception_visualization", origin="captum-topgap", kind="model", aliases=("pv",),
                 description="Perception Visualization: Grad-CAM × the decoder's reconstruction (Giulivi et al.)")
class PerceptionVisualization(MethodAttribution):
    """Perception Visualization as a Captum attribution: image-shaped (N, C, H, W) PV of ``target``.

    Args:
        model: the classifier explained, or its :class:`~captum_topgap.models.PerceptionDecoder`.
        decoder: the trained decoder over ``model`` (not needed when ``model`` is one).
        layer: the decoder's layer L, or ``None`` (the decoder decides; another layer is an error).
        grey: g, the colour where the Grad-CAM is zero.
        upsample: taken for the contract's sake; PV is at the input's resolution.

    Example:
        >>> import timm
        >>> classifier = timm.create_model("resnet18", num_classes=3)
        >>> pv = PerceptionVisualization(classifier, PerceptionDecoder(classifier, image_size=32))
        >>> sorted(pv.attribute_all(torch.rand(1, 3, 32, 32), target=1))
        ['gradcam', 'pv', 'reconstruction']
    """

    method_name = "perception_visualization"
    takes_forward_args = False
    target_score = "logit"

    def __init__(self, model: nn.Module, decoder: PerceptionDecoder | None = None,
                 layer: nn.Module | str | None = None, grey: float = GREY, upsample: bool = True) -> None:
        decoder = model if isinstance(model, PerceptionDecoder) else decoder
        if not isinstance(decoder, PerceptionDecoder):
            raise ValueError("'perception_visualization' needs `decoder=`: a PerceptionDecoder trained over this model "
                             "(captum-topgap train --method perception --classifier CKPT), or pass the decoder itself "
                             "as the model.")
        if decoder is not model and decoder.classifier is not model:
            raise ValueError("`decoder` was built over another classifier than `model`; pass the decoder trained over "
                             "this model, or pass the decoder itself as the model.")
        if layer is not None and resolve_layer(decoder.classifier, layer) is not decoder.layer:
            raise ValueError(f"`layer` {layer if isinstance(layer, str) else type(layer).__name__} is not the "
                             f"decoder's layer {decoder.layer_name!r}: PV combines the Grad-CAM and the reconstruction "
                             "of one layer. Leave layer=None, or train a decoder at that layer (--layer).")
        check_bool(upsample, "upsample")
        super().__init__(decoder)
        self.decoder, self.grey = decoder, check_float(grey, "grey", minimum=0.0, maximum=1.0)

    def attribute_all(self, inputs: torch.Tensor, target: TargetType = None) -> dict[str, torch.Tensor]:
        """``{"gradcam", "reconstruction", "pv"}`` of ``target`` from one pass (see :func:`perception_maps`)."""
        inputs = check_images(inputs, self.model).detach()
        with preserved_state(self.model), torch.enable_grad():
            return perception_maps(self.decoder, inputs, self.labels(inputs, target), grey=self.grey)

    def _attribute(self, inputs: torch.Tensor, labels: torch.Tensor, score: Score = "logit") -> torch.Tensor:
        check_score(score, self.method_name)
        return perception_maps(self.decoder, inputs, labels, score, self.grey)["pv"]

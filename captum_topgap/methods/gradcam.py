"""Differentiable Grad-CAM at several layers from one forward and one backward (Selvaraju et al., 2017).

    α_k^l = mean_{i,j} ∂S / ∂A_k^l(i, j),      M_l = Σ_k α_k^l A_k^l,      I_l = ReLU(M_l),      I'_l = up(I_l)

S is the score explained: the logit of the target class, S = z_c (``score="logit"``, Grad-CAM), or the
*centred* logit S = z_c − (1/C) Σ_{c'} z_{c'} (``score="centred"``). Softmax is invariant to adding one
number to every logit, so a network can carry evidence for c by lowering the other classes' logits; that
evidence is invisible in the map of z_c but not in the map of the centred logit (docs/reff.md).
``relu=False`` returns the signed map M_l (before the ReLU).

``weighting="positive"`` is the "sharpened" Grad-CAM ("sharpen focus" in the Grad-CAM family):
α_k^l = mean_{i,j} ReLU(∂S / ∂A_k^l(i, j)), so only evidence that raises the class score weights a channel.

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

import inspect
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import check_bool
from captum_topgap.attribution import LayerMethod, capture, upsample_to
from captum_topgap.registry import register_method

SCORES = ("logit", "centred")
Score = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``"logit"``, ``"centred"`` or ``score(logits (M, C), owners (M,)) -> (M,)``: each row's own scalar, ``owners``
the index of the image (in the attributed batch) that the row's input was derived from — the image itself, or
one of its masked or augmented copies."""


def class_score(logits: torch.Tensor, target: torch.Tensor, score: Score = "logit",
                owners: torch.Tensor | None = None) -> torch.Tensor:
    """The explained score of each row: z_c (``"logit"``), z_c − mean_{c'} z_{c'} (``"centred"``), or
    ``score(logits, owners)`` for a callable (a pytorch-grad-cam target's own scalar per image; ``owners``
    default to 0 … M − 1): (M,).

    Example:
        >>> class_score(torch.tensor([[3.0, 1.0]]), torch.tensor([0]), "centred").tolist()
        [1.0]
        >>> class_score(torch.tensor([[3.0, 1.0]]), torch.tensor([0]), lambda z, _: z.softmax(1)[:, 1]).shape
        torch.Size([1])
    """
    if callable(score):
        rows = torch.arange(len(logits), device=logits.device) if owners is None else owners
        values = score(logits, rows)
        if values.shape != (len(logits),):
            raise ValueError(f"a `score` function must give one value per image ({len(logits)},), got shape "
                             f"{tuple(values.shape)}.")
        return values
    if score not in SCORES:
        raise ValueError(f"`score` must be one of {SCORES} or a function of the logits, got {score!r}.")
    picked = logits.gather(1, target.view(-1, 1))[:, 0]
    return picked - logits.mean(dim=1) if score == "centred" else picked


def check_score(score: object, method: str) -> None:
    """A ``score`` function must take ``(logits, owners)`` (:data:`Score`): one of another arity is refused here,
    naming ``score`` and the fix, before any forward — it would otherwise fail inside the method with Python's
    own TypeError. Names (``"logit"``, …) are checked where the method reads them.

    Example:
        >>> check_score(lambda logits: logits[:, 0], "differentiable_gradcam")
        Traceback (most recent call last):
        ...
        TypeError: `score` of differentiable_gradcam is called as score(logits, owners) ...
    """
    if not callable(score):
        return
    try:
        inspect.signature(score).bind(None, None)
    except TypeError as error:
        raise TypeError(f"`score` of {method} is called as score(logits, owners) — logits (M, C), owners (M,) the "
                        f"image of each row — and returns (M,), but {error}; e.g. score=lambda logits, owners: "
                        "logits[:, 2].") from None
    except ValueError:  # no signature to read (a builtin): its call will tell
        pass


def principal_projection(weighted: torch.Tensor) -> torch.Tensor:
    """Eigen-smoothing (pytorch-grad-cam's ``eigen_smooth``): each image's (C, h, w) weighted activations
    projected on their first principal component over positions, (N, C, h, w) -> (N, 1, h, w).

    A principal component's sign is arbitrary (pytorch-grad-cam leaves it to LAPACK, so its map can come out
    inverted); here it is oriented so the projection correlates positively with the channel sum — the
    Grad-CAM map the smoothing replaces.

    Example:
        >>> weighted = torch.zeros(1, 2, 1, 3); weighted[0, 0, 0] = torch.tensor([1.0, 2.0, 3.0])
        >>> principal_projection(weighted).flatten().tolist()
        [-1.0, 0.0, 1.0]
    """
    n, _, h, w = weighted.shape
    positions = weighted.flatten(2).transpose(1, 2)
    centred = positions - positions.mean(dim=1, keepdim=True)
    component = torch.linalg.svd(centred, full_matrices=False)[2][:, 0, :]
    projection = (centred @ component.unsqueeze(-1)).squeeze(-1)
    channel_sum = positions.sum(dim=2)
    agreement = (projection * (channel_sum - channel_sum.mean(dim=1, keepdim=True))).sum(dim=1, keepdim=True)
    return (projection * torch.where(agreement < 0, -1.0, 1.0)).view(n, 1, h, w)


def grad_cam_maps(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, layers: Sequence[nn.Module],
                  create_graph: bool = False, upsample: bool = True, weighting: str = "mean", relu: bool = True,
                  score: Score = "logit", reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  eigen_smooth: bool = False,
                  owners: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits (N, C) and one Grad-CAM (N, 1, H, W) per layer (layer resolution with ``upsample=False``);
    ``weighting`` is ``"mean"`` (Grad-CAM) or ``"positive"`` (mean of the positive gradients); ``relu=False``
    keeps the signed map; ``score`` is ``"logit"``, ``"centred"`` or a function of the logits (see
    :func:`class_score`); ``reshape`` maps each layer's output (and its gradient) to (N, C, h, w) first — a
    transformer's tokens to their grid; ``eigen_smooth`` replaces the channel sum by
    :func:`principal_projection`; ``owners`` go to a callable ``score`` (:data:`Score`).

    The layer's gradient exists even when nothing before the layer has parameters (a pooling layer on the
    input): the forward is then repeated on a copy of the inputs that requires gradients (only then: an input
    gradient would cost every training step of ReFF a backward through the first layer); the caller's tensor
    is untouched.
    """
    if weighting not in ("mean", "positive"):
        raise ValueError(f"`weighting` must be 'mean' or 'positive', got {weighting!r}")
    maps = []
    with torch.enable_grad():
        with capture(layers) as seen:
            logits = model(inputs)
        activations = list(seen.ready())
        if not all(a.requires_grad for a in activations):  # nothing trainable before a layer: trace the input
            with capture(layers) as seen:
                logits = model(inputs.detach().requires_grad_(True))
            activations = list(seen.ready())
        grads = list(seen.gradients(class_score(logits, target, score, owners).sum(), create_graph=create_graph))
        if reshape is not None:
            activations, grads = [reshape(a) for a in activations], [reshape(g) for g in grads]
        flat = [i for i, a in enumerate(activations) if a.dim() != 4]
        if flat:
            raise ValueError(f"`layers` {flat} produced no spatial (N, C, h, w) output in the forward pass; pass "
                             "reshape_transform= for a transformer.")
        for activation, grad in zip(activations, grads, strict=True):
            weights = (F.relu(grad) if weighting == "positive" else grad).mean(dim=(2, 3), keepdim=True)
            weighted = weights * activation
            cam = principal_projection(weighted) if eigen_smooth else weighted.sum(dim=1, keepdim=True)
            cam = F.relu(cam) if relu else cam
            if upsample:
                cam = upsample_to(cam, inputs.shape[-2:])
            maps.append(cam if create_graph else cam.detach())
    return logits, maps


@register_method("differentiable_gradcam", origin="captum-topgap", kind="layer",
                 description="torch-native Grad-CAM that can keep its graph (the core ReFF trains through)")
class DifferentiableGradCAM(LayerMethod):
    """Grad-CAM from the torch-native core above: the core ReFF trains through. ``attribute(...,
    create_graph=True)`` keeps the graph for a loss on the maps.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> DifferentiableGradCAM(net).attribute(torch.rand(1, 3, 8, 8), target=1).shape
        torch.Size([1, 1, 8, 8])
    """

    method_name = "differentiable_gradcam"
    weighting = "mean"

    def core(self, inputs: torch.Tensor, labels: torch.Tensor, create_graph: bool = False,
             score: Score = "logit", eigen_smooth: bool = False) -> torch.Tensor:
        """Grad-CAM of ``labels`` at the layer's resolution (``score``: what is differentiated)."""
        check_score(score, self.method_name)
        return grad_cam_maps(self.network, inputs, labels, [self.layer], check_bool(create_graph, "create_graph"),
                             upsample=False, weighting=self.weighting, score=score, reshape=self.reshape_transform,
                             eigen_smooth=check_bool(eigen_smooth, "eigen_smooth"))[1][0]


@register_method("positive_gradcam", origin="captum-topgap", kind="layer", aliases=("sharpened_gradcam",),
                 description="Grad-CAM weighted by the mean positive gradient (sharpened focus)")
class PositiveGradCAM(DifferentiableGradCAM):
    """Grad-CAM with positive-gradient channel weights, α_k = mean_{i,j} ReLU(∂y_c/∂A_k(i, j)) ("sharpen
    focus"): the Grad-CAM core with ``weighting="positive"``, not a copy.

    Example (a linear classifier on GAP features: the gradient is the classifier row, so only the
    channels with positive weights count):
        >>> net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        ...                           torch.nn.Linear(2, 1, bias=False))
        >>> _ = net[3].weight.data.copy_(torch.tensor([[1.0, -1.0]]))
        >>> x = torch.ones(1, 2, 2, 2)
        >>> PositiveGradCAM(net, net[0], upsample=False).attribute(x, target=0).flatten().tolist()
        [0.25, 0.25, 0.25, 0.25]
    """

    method_name = "positive_gradcam"
    weighting = "positive"

"""Loss terms that drop into any PyTorch training loop: Top-GAP's sparseness loss, ReFF and its variants, RRR.

Each term is a function or a small class of the model being trained; :mod:`captum_topgap.train.objectives`
turns them into objectives of this project's one training loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import check_mask
from captum_topgap.methods.gradcam import class_score, grad_cam_maps

TOPGAP_SPARSITY = 0.01
"""Default λ of the sparseness term; chosen by the sweep in docs/topgap.md."""


def check_lambda(value: object, name: str) -> float:
    """A weight λ of a loss term: a finite number ≥ 0.

    Example:
        >>> check_lambda(float("nan"), "sparsity")
        Traceback (most recent call last):
        ...
        ValueError: `sparsity` (λ) must be ≥ 0, got nan; pass a finite number such as 0.01.
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"`{name}` (λ) must be ≥ 0, got {value!r}; pass a finite number such as 0.01.")
    if value < 0:
        raise ValueError(f"`{name}` (λ) must be ≥ 0, got {value!r}.")
    return float(value)


def check_classes(target: torch.Tensor, num_classes: int, name: str = "target") -> None:
    """Class indices in [0, num_classes − 1] (one device sync), or an error naming the bad ones.

    Example:
        >>> check_classes(torch.tensor([0, 5]), 3)
        Traceback (most recent call last):
        ...
        ValueError: `target` [5] out of range for a model with 3 outputs; use indices in [0, 2].
    """
    if target.numel() and not bool(((target >= 0) & (target < num_classes)).all()):
        bad = sorted(set(target[(target < 0) | (target >= num_classes)].tolist()))
        raise ValueError(f"`{name}` {bad[:5]} out of range for a model with {num_classes} outputs; use indices in "
                         f"[0, {num_classes - 1}].")


def topgap_loss(logits: torch.Tensor, cam: torch.Tensor, target: torch.Tensor,
                sparsity: float = TOPGAP_SPARSITY) -> torch.Tensor:
    """Top-GAP loss: cross-entropy on the top-k pooled logits + λ · mean |CAM|.

        L = CE(TopKPool_k(CAM), y) + λ · (1 / (N·C·H·W)) Σ |CAM|

    The top-k term pulls k positions of the true class map up; the sparseness term pushes the whole
    map towards zero, so only the most relevant positions stay active.

    Example:
        >>> cam = torch.zeros(2, 3, 4, 4)
        >>> logits = cam.flatten(2).mean(-1)
        >>> round(float(topgap_loss(logits, cam + 1.0, torch.tensor([0, 1]), sparsity=0.5)), 4)  # ln 3 + 0.5
        1.5986
    """
    sparsity = check_lambda(sparsity, "sparsity")
    target = check_topgap_arguments(logits, cam, target)
    check_classes(target, logits.shape[-1])
    return F.cross_entropy(logits, target) + sparsity * cam.abs().mean()


def check_topgap_arguments(logits: object, cam: object, target: object) -> torch.Tensor:
    """``logits`` (N, C), ``cam`` (N, C, H, W) floats of one batch, ``target`` (N,) integers, N ≥ 1 — or an
    error naming the argument and the call that gives it; returns ``target`` as int64 (:func:`check_labels`).

    Example:
        >>> check_topgap_arguments(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
        Traceback (most recent call last):
        ...
        ValueError: `logits` has shape (2, 3, 4, 4) and `cam` (2, 3): the arguments look swapped; ...
    """
    hint = "logits, cam = model(x, return_cam=True)"
    for name, value, rank in (("logits", logits, 2), ("cam", cam, 4)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            kind = f"{value.dtype} tensor" if isinstance(value, torch.Tensor) else type(value).__name__
            raise TypeError(f"`{name}` must be a float tensor of shape {'(N, C)' if rank == 2 else '(N, C, H, W)'}, "
                            f"got {kind}; use {hint}.")
    assert isinstance(logits, torch.Tensor) and isinstance(cam, torch.Tensor)
    if logits.dim() == 4 and cam.dim() == 2:
        raise ValueError(f"`logits` has shape {tuple(logits.shape)} and `cam` {tuple(cam.shape)}: the arguments look "
                         f"swapped; call topgap_loss(logits, cam, target) with {hint}.")
    if logits.dim() != 2 or cam.dim() != 4 or cam.shape[:2] != logits.shape:
        raise ValueError(f"`cam` must be (N, C, H, W) with the (N, C) = {tuple(logits.shape)[:2]} of `logits`, got "
                         f"`cam` {tuple(cam.shape)} and `logits` {tuple(logits.shape)}; use {hint}.")
    if len(logits) == 0:
        raise ValueError("`logits` is an empty batch (N = 0): the loss of no image is undefined; skip empty batches.")
    return check_labels(target, len(logits))


def check_labels(target: object, batch_size: int, name: str = "target") -> torch.Tensor:
    """A (N,) tensor of integer class indices, one per image, as int64 — any integer dtype is taken (int32 labels
    are common; torch's ``cross_entropy`` itself takes int64 and uint8 only) — or an error naming its shape or
    dtype and the fix.

    Example:
        >>> check_labels(torch.tensor([1, 0], dtype=torch.int32), 2).dtype
        torch.int64
        >>> check_labels(torch.tensor([[0.0, 1.0]]), 1)
        Traceback (most recent call last):
        ...
        ValueError: `target` must be (1,) integer class indices, got a torch.float32 tensor of shape (1, 2); ...
    """
    if not isinstance(target, torch.Tensor) or target.is_floating_point() or target.dtype == torch.bool \
            or target.shape != (batch_size,):
        found = (f"a {target.dtype} tensor of shape {tuple(target.shape)}" if isinstance(target, torch.Tensor)
                 else type(target).__name__)
        raise ValueError(f"`{name}` must be ({batch_size},) integer class indices, got {found}; for one-hot labels "
                         "pass target.argmax(1).")
    return target.long()


def check_batch(inputs: object, name: str = "inputs") -> torch.Tensor:
    """A batch of images (N, C, H, W) for a loss term, or an error naming ``name``'s shape and the fix (one
    image: add its batch dimension).

    Example:
        >>> check_batch(torch.zeros(3, 8, 8))
        Traceback (most recent call last):
        ...
        ValueError: `inputs` must be a batch of images (N, C, H, W), got shape (3, 8, 8); for one image pass \
inputs.unsqueeze(0), with target[None] and mask[None].
    """
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        found = f"shape {tuple(inputs.shape)}" if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"`{name}` must be a batch of images (N, C, H, W), got {found}; for one image pass "
                         f"{name}.unsqueeze(0), with target[None] and mask[None].")
    return inputs


def default_reff_layers(model: nn.Module) -> list[nn.Module]:
    """The four ResNet stages (``layer1`` … ``layer4``), else the last four entries of timm's ``feature_info``.

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet18", num_classes=2)
        >>> default_reff_layers(model)[-1] is model.layer4
        True
    """
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):
        return [getattr(model, f"layer{i}") for i in range(1, 5)]
    info = getattr(model, "feature_info", None)
    if isinstance(info, list) and len(info) >= 4 and all("module" in f for f in info):
        modules = dict(model.named_modules())
        return [modules[f["module"]] for f in info[-4:]]
    raise ValueError(f"cannot find four stages in {type(model).__name__}; pass `layers=` (e.g. the outputs "
                     "of the last four convolutional blocks).")


def stem_reff_layers(model: nn.Module) -> list[nn.Module]:
    """The stem — the first entry of timm's ``feature_info``, stride 2 (a ResNet's ``act1``, an EfficientNet's
    ``blocks.0``) — and the four stages of :func:`default_reff_layers`: the layers of the demo's contrastive share.

    A stage's Grad-CAM position sees most of a small image through its receptive field, so a share kept
    inside the mask at the stages alone can still rest on background pixels; the stem's positions see
    7 × 7 pixels (a ResNet's), which ties the term to the pixels themselves (docs/reff.md).

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet18", num_classes=2)
        >>> [name for name in layer_names(model, stem_reff_layers(model))]
        ['act1', 'layer1', 'layer2', 'layer3', 'layer4']
    """
    info = getattr(model, "feature_info", None)
    if not (isinstance(info, list) and info and "module" in info[0]):
        raise ValueError(f"{type(model).__name__} has no timm `feature_info` to find its stem; pass `layers=` "
                         "(the stem's output and the four stages).")
    stages = default_reff_layers(model)
    stem = dict(model.named_modules())[info[0]["module"]]
    if stem in stages:
        raise ValueError(f"{type(model).__name__}'s first `feature_info` entry is one of its four stages; pass "
                         "`layers=` with its stem's output.")
    return [stem, *stages]


def layer_names(model: nn.Module, layers: list[nn.Module]) -> list[str]:
    """Dotted names of ``layers`` inside ``model`` (``"layer1"``, ``"features.3"``).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
        >>> layer_names(net, [net[1]])
        ['1']
    """
    names = {module: name for name, module in model.named_modules()}
    missing = [type(layer).__name__ for layer in layers if layer not in names]
    if missing:
        raise ValueError(f"`layers` {missing} are not submodules of the model; pass modules of the model itself.")
    return [names[layer] for layer in layers]


REFF_WEIGHTS = (15.0, 60.0, 250.0, 1000.0)
"""w_l of the published ReFF (the supplementary's four ResNet stages)."""

VARIANTS = {
    "reff": "Σ_l w_l ‖ReLU(M_l)' ⊙ (1 − s)‖₂ — the published term (M_l: Grad-CAM of the logit z_y)",
    "l1": "Σ_l w_l ‖ReLU(M_l)' − s‖₁ — the supplementary's L1 variant",
    "l2": "Σ_l w_l ‖ReLU(M_l)' − s‖₂² — the supplementary's L2 variant",
    "signed": "Σ_l w_l ‖M_l' ⊙ (1 − s)‖₂ — the published norm on the signed map (no ReLU to hide behind)",
    "share": "Σ_l w_l Σ|M_l'|(1 − s) / Σ|M_l'| — the share of signed mass outside the mask (scale-free)",
    "contrastive": "Σ_l w_l Σ|C_l'|(1 − s) / Σ|C_l'| — the share for the centred logit z_y − mean_c z_c",
}
"""ReFF variants: the published three and the ones tried against its loophole (docs/reff.md)."""

_SPEC = {  # variant -> (score, ReLU on the map, penalty)
    "reff": ("logit", True, "norm"), "l1": ("logit", True, "l1"), "l2": ("logit", True, "l2"),
    "signed": ("logit", False, "norm"), "share": ("logit", False, "share"),
    "contrastive": ("centred", False, "share"),
}


class ReFF:
    """ReFF explanation regulariser (Adachi & Yamaguchi, ICME 2022), a loss term for any training loop.

    With I'_l the differentiable Grad-CAM of the labelled class at layer l, upsampled to the input, and
    s the relevance mask (soft masks allowed), per sample and averaged over the batch:

        "reff": Σ_l w_l ‖I'_l ⊙ (1 − s)‖₂      (explanations suppressed only outside the relevant region)
        "l1":   Σ_l w_l ‖I'_l − s‖₁
        "l2":   Σ_l w_l ‖I'_l − s‖₂²

    and the variants that close the published term's loophole (:data:`VARIANTS`, docs/reff.md), built on
    the signed map M_l (before the ReLU) and, for ``"contrastive"``, on the centred logit z_y − mean_c z_c:

        "signed":      Σ_l w_l ‖M'_l ⊙ (1 − s)‖₂
        "share":       Σ_l w_l Σ_p |M'_l(p)| (1 − s(p)) / Σ_p |M'_l(p)|
        "contrastive": the share of the centred logit's map

    Args:
        model: the classifier being trained (its mode is left as it is).
        layers: modules whose outputs are explained; ``None`` takes the four ResNet stages.
        weights: w_l ≥ 0, one per layer; default (15, 60, 250, 1000) as in the ReFF supplementary for the norms
            (made for four layers: pass your own for another number), equal weights 1/L for the shares (each in
            [0, 1]).
        variant: one of :data:`VARIANTS`.

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet18", num_classes=3)
        >>> reff = ReFF(model)
        >>> x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 2])
        >>> reff(x, y, torch.ones(2, 1, 32, 32)).item()  # nothing lies outside an all-ones mask
        0.0
    """

    def __init__(self, model: nn.Module, layers: list[nn.Module] | None = None,
                 weights: tuple[float, ...] | None = None, variant: str = "reff") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {sorted(VARIANTS)}, got {variant!r}.")
        self.model, self.variant = model, variant
        self.layers = list(layers) if layers is not None else default_reff_layers(model)
        if not self.layers:
            raise ValueError("`layers` is empty; pass at least one module of the model (or None for the four "
                             "ResNet stages).")
        self.names = layer_names(model, self.layers)
        self.score, self.relu, self.penalty = _SPEC[variant]
        given = weights is not None
        if weights is None:
            weights = REFF_WEIGHTS if self.penalty != "share" else (1 / len(self.layers),) * len(self.layers)
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
            raise ValueError(f"`weights` must be finite numbers ≥ 0, one per layer, got {weights!r}.")
        if len(weights) != len(self.layers):
            hint = "" if given else f" (the published {REFF_WEIGHTS} are for four stages)"
            raise ValueError(f"`weights` has {len(weights)} entries for {len(self.layers)} layers{hint}; give one per "
                             "layer.")
        if not all(not isinstance(w, bool) and isinstance(w, Real) and math.isfinite(w) and w >= 0 for w in weights):
            raise ValueError(f"`weights` must be finite numbers ≥ 0, one per layer, got {tuple(weights)}.")
        self.weights = tuple(float(w) for w in weights)

    def term_and_logits(self, inputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        network: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ReFF term (scalar, differentiable w.r.t. the weights) and the logits of the same forward;
        ``network`` is the module to run (e.g. the DistributedDataParallel wrapper of the model).
        """
        relevant = check_relevance(mask, check_batch(inputs))
        target = check_labels(target, len(inputs))

        def score(logits: torch.Tensor, _owners: torch.Tensor) -> torch.Tensor:  # once the class count is known
            check_classes(target, logits.shape[1])
            return class_score(logits, target, self.score)

        logits, maps = grad_cam_maps(network or self.model, inputs, target, self.layers, create_graph=True,
                                     relu=self.relu, score=score)
        term = inputs.new_zeros(())
        outside = (1 - relevant).flatten(1)
        for weight, cam in zip(self.weights, maps, strict=True):
            flat = cam.flatten(1)
            if self.penalty == "norm":
                per_sample = (flat * outside).norm(dim=1)
            elif self.penalty == "l1":
                per_sample = (flat - relevant.flatten(1)).abs().sum(1)
            elif self.penalty == "l2":
                per_sample = (flat - relevant.flatten(1)).pow(2).sum(1)
            else:
                mass = flat.abs()
                per_sample = (mass * outside).sum(1) / mass.sum(1).clamp_min(1e-12)
            term = term + weight * per_sample.mean()
        return term, logits

    def __call__(self, inputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The ReFF term alone (see :meth:`term_and_logits`)."""
        return self.term_and_logits(inputs, target, mask)[0]


class RRR:
    """Right for the Right Reasons (Ross, Hughes & Doshi-Velez, IJCAI 2017): penalise input gradients of the
    summed log-probabilities outside the relevant region s, per sample and averaged over the batch:

        RRR = ‖(1 − s) ⊙ ∂(Σ_c log p_c(x)) / ∂x‖₂²      (the mask broadcast over the channels)

    A control for ReFF: the same annotations, constrained at the input instead of at Grad-CAM. ``layers``
    (default: the four ResNet stages when the model has them) are only monitored by the diagnostic.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2, bias=False))
        >>> _ = net[1].weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        >>> x = torch.zeros(1, 1, 1, 2)   # p = (½, ½): ∂Σ_c log p_c/∂x = Σ_c (1 − 2p_c) ∂z_c/∂x = 0
        >>> RRR(net)(x, torch.tensor([0]), torch.zeros(1, 1, 1, 2)).item()
        0.0
    """

    variant = "rrr"

    def __init__(self, model: nn.Module, layers: list[nn.Module] | None = None) -> None:
        self.model = model
        if layers is None:  # monitor the four stages when the model has them (the diagnostic's layers)
            try:
                layers = default_reff_layers(model)
            except ValueError:
                layers = []
        self.layers = list(layers)
        self.names = layer_names(model, self.layers)
        self.weights = (0.0,) * len(self.layers)  # the layers are only monitored, not regularised

    def term_and_logits(self, inputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        network: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The RRR term (differentiable w.r.t. the weights) and the logits of the same forward."""
        relevant = check_relevance(mask, check_batch(inputs))
        check_labels(target, len(inputs))
        with torch.enable_grad():
            x = inputs.detach().requires_grad_(True)
            logits = (network or self.model)(x)
            (gradient,) = torch.autograd.grad(F.log_softmax(logits, dim=1).sum(), x, create_graph=True)
        return ((1 - relevant) * gradient).pow(2).flatten(1).sum(1).mean(), logits

    def __call__(self, inputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The RRR term alone (see :meth:`term_and_logits`)."""
        return self.term_and_logits(inputs, target, mask)[0]


def check_relevance(mask: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """A (N, 1, H, W) float relevance mask in [0, 1] for ``inputs`` (soft masks allowed), or a clear error."""
    relevant = check_mask(mask, inputs).to(inputs.device, inputs.dtype)
    if not bool(((relevant >= 0) & (relevant <= 1)).all()):  # NaN fails both comparisons
        found = " (found NaN)" if bool(relevant.isnan().any()) else ""
        raise ValueError(f"`mask` values must lie in [0, 1] (1 = relevant){found}; soft masks are fine.")
    return relevant

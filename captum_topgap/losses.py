"""Loss terms that drop into a plain PyTorch loop, and the objectives of the project's training loop.

An *objective* maps ``(model, batch)`` to ``(loss, logits)``; :func:`captum_topgap.training.train` is one
loop for all of them — the plain classifier, Top-GAP, and (later) ReFF and the expansion network.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import check_mask
from captum_topgap.data.transforms import Batch
from captum_topgap.methods.gradcam import grad_cam_maps

TOPGAP_SPARSITY = 0.01
"""Default λ of the sparseness term; chosen by the sweep in docs/topgap.md."""


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
    if sparsity < 0:
        raise ValueError(f"`sparsity` (λ) must be ≥ 0, got {sparsity}.")
    return F.cross_entropy(logits, target) + sparsity * cam.abs().mean()


class Objective(Protocol):
    """``objective(model, batch) -> (loss, logits)``; the training loop back-propagates ``loss``."""

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]: ...


class CrossEntropy:
    """The plain classifier objective: cross-entropy of ``model(images)``.

    Example:
        >>> from captum_topgap.data import collate
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> _ = torch.nn.init.zeros_(net[1].weight), torch.nn.init.zeros_(net[1].bias)
        >>> loss, logits = CrossEntropy()(net, collate([(torch.ones(3, 2, 2), 1, None)]))
        >>> round(float(loss), 4)  # ln 2
        0.6931
    """

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch.images)
        return F.cross_entropy(logits, batch.labels), logits


class TopGAPObjective:
    """Top-GAP objective: :func:`topgap_loss` of ``model(images, return_cam=True)``.

    Args:
        sparsity: λ of the sparseness term.
    """

    def __init__(self, sparsity: float = TOPGAP_SPARSITY) -> None:
        self.sparsity = sparsity

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits, cam = model(batch.images, return_cam=True)
        return topgap_loss(logits, cam, batch.labels, self.sparsity), logits


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


class ReFF:
    """ReFF explanation regulariser (Adachi & Yamaguchi, ICME 2022), a loss term for any training loop.

    With I'_l the differentiable Grad-CAM of the labelled class at layer l, upsampled to the input, and
    s the relevance mask (soft masks allowed), per sample and averaged over the batch:

        "reff": Σ_l w_l ‖I'_l ⊙ (1 − s)‖₂      (explanations suppressed only outside the relevant region)
        "l1":   Σ_l w_l ‖I'_l − s‖₁
        "l2":   Σ_l w_l ‖I'_l − s‖₂²

    Args:
        model: the classifier being trained (its mode is left as it is).
        layers: modules whose outputs are explained; ``None`` takes the four ResNet stages.
        weights: w_l, default (15, 60, 250, 1000) as in the seed.
        variant: ``"reff"``, ``"l1"`` or ``"l2"``.

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet18", num_classes=3)
        >>> reff = ReFF(model)
        >>> x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 2])
        >>> float(reff(x, y, torch.ones(2, 1, 32, 32)))  # nothing lies outside an all-ones mask
        0.0
    """

    def __init__(self, model: nn.Module, layers: list[nn.Module] | None = None,
                 weights: tuple[float, ...] = (15, 60, 250, 1000), variant: str = "reff") -> None:
        if variant not in ("reff", "l1", "l2"):
            raise ValueError(f"`variant` must be 'reff', 'l1' or 'l2', got {variant!r}.")
        self.model, self.variant = model, variant
        self.layers = list(layers) if layers is not None else default_reff_layers(model)
        if len(weights) != len(self.layers):
            raise ValueError(f"`weights` has {len(weights)} entries for {len(self.layers)} layers; give one per layer.")
        self.weights = tuple(float(w) for w in weights)

    def term_and_logits(self, inputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        network: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ReFF term (scalar, differentiable w.r.t. the weights) and the logits of the same forward;
        ``network`` is the module to run (e.g. the DistributedDataParallel wrapper of the model)."""
        relevant = check_mask(mask, inputs).to(inputs.device)
        if relevant.min() < 0 or relevant.max() > 1:
            raise ValueError("`mask` values must lie in [0, 1] (1 = relevant); soft masks are fine.")
        logits, maps = grad_cam_maps(network or self.model, inputs, target, self.layers, create_graph=True)
        term = inputs.new_zeros(())
        for weight, cam in zip(self.weights, maps, strict=True):
            if self.variant == "reff":
                per_sample = (cam * (1 - relevant)).flatten(1).norm(dim=1)
            elif self.variant == "l1":
                per_sample = (cam - relevant).abs().flatten(1).sum(1)
            else:
                per_sample = (cam - relevant).pow(2).flatten(1).sum(1)
            term = term + weight * per_sample.mean()
        return term, logits

    def __call__(self, inputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.term_and_logits(inputs, target, mask)[0]


REFF_WEIGHT = {"reff": 1e-3, "l1": 1e-6, "l2": 1e-6}
"""Default λ per variant: the seed's 1e-6 for L1/L2; 1e-3 for ReFF makes the term ≈ the cross-entropy at
initialisation of a resnet18 on 64-px Textured MNIST (measured: term ≈ 3.4e3, L1 ≈ 8.2e5, L2 ≈ 6.5e5)."""


class ReFFObjective:
    """Algorithm 1 of the ReFF supplementary as an objective of the training loop.

        L = CE(f(x), y) + λ · (1/|B|) Σ_{(x, y, s) ∈ B} l_ReFF(x, y, s)

    Samples with an annotation use their mask (Eq. 3); the others use the pseudo-annotator's mask G_φ(x)
    (Eq. 5), or — without an annotator — add no explanation term (an all-ones mask).

    Args:
        reff: the :class:`ReFF` term (bound to the model being trained).
        weight: λ (default :data:`REFF_WEIGHT` of the variant).
        annotator: a trained :class:`~captum_topgap.models.pseudo_annotator.PseudoAnnotator` or ``None``.

    Example:
        >>> import timm
        >>> from captum_topgap.data import collate
        >>> model = timm.create_model("resnet18", num_classes=2)
        >>> batch = collate([(torch.rand(3, 32, 32), 1, torch.ones(1, 32, 32)), (torch.rand(3, 32, 32), 0, None)])
        >>> loss, logits = ReFFObjective(ReFF(model))(model, batch)  # all-ones / no mask: only the cross-entropy
        >>> bool(torch.isclose(loss, F.cross_entropy(logits, batch.labels)))
        True
    """

    def __init__(self, reff: ReFF, weight: float | None = None, annotator: nn.Module | None = None) -> None:
        self.reff, self.annotator = reff, annotator
        self.weight = REFF_WEIGHT[reff.variant] if weight is None else weight

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        annotated = batch.annotated.view(-1, 1, 1, 1)
        if self.annotator is not None and not bool(annotated.all()):
            fallback = self.annotator.annotate(batch.images)
        else:
            fallback = torch.ones_like(batch.masks)
        masks = torch.where(annotated, batch.masks, fallback)
        term, logits = self.reff.term_and_logits(batch.images, batch.labels, masks, network=model)
        return F.cross_entropy(logits, batch.labels) + self.weight * term, logits

"""Objectives of the one training loop: ``objective(model, batch) -> (loss, logits)``.

The plain classifier, Top-GAP, ReFF (every variant) and RRR through :class:`ExplanationObjective` with the
masks of ReFF's Algorithm 1, the expansion network of Expansion CAM and the decoder of Perception
Visualization. :func:`make_objective` is the one place a method name becomes an objective (the CLI, the demo
and the sweep call it).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import check_float
from captum_topgap._layers import resolve_layer
from captum_topgap.data.transforms import Batch
from captum_topgap.evaluate.diagnostics import LayerDiagnostic, gradcam_diagnostic
from captum_topgap.evaluate.wsol import mask_boxes
from captum_topgap.models.boxhead import normalised_boxes
from captum_topgap.models.expansion import ExpansionNet
from captum_topgap.models.perception import CONSISTENCY_WEIGHT, Perceived, PerceptionDecoder, feature_consistency
from captum_topgap.train.losses import REFF_WEIGHTS, RRR, TOPGAP_SPARSITY, ReFF, check_lambda, topgap_loss


class Annotator(Protocol):
    """Draws relevance masks (N, 1, H, W) in [0, 1] for images: the pix2pix pseudo-annotator of ReFF."""

    def annotate(self, images: torch.Tensor) -> torch.Tensor:
        """Soft masks for ``images``."""


def algorithm_1_masks(batch: Batch, annotator: Annotator | None) -> torch.Tensor:
    """The masks of Algorithm 1 of the ReFF supplementary: each sample's annotation, else the pseudo-annotator's
    mask G_φ(x), else (no annotator) all ones — a mask that constrains nothing.

    Example:
        >>> from captum_topgap.data import collate
        >>> batch = collate([(torch.rand(3, 2, 2), 0, torch.zeros(1, 2, 2)), (torch.rand(3, 2, 2), 1, None)])
        >>> algorithm_1_masks(batch, None).flatten(1).mean(1).tolist()
        [0.0, 1.0]
    """
    annotated = batch.annotated.view(-1, 1, 1, 1)
    if annotator is not None and not bool(annotated.all()):
        fallback = annotator.annotate(batch.images)
    else:
        fallback = torch.ones_like(batch.masks)
    return torch.where(annotated, batch.masks, fallback)


class Objective(Protocol):
    """``objective(model, batch) -> (loss, logits)``; the training loop back-propagates ``loss``."""

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to back-propagate and the logits of the batch."""


class CrossEntropy:
    """The plain classifier objective: cross-entropy of ``model(images)``.

    Example:
        >>> from captum_topgap.data import collate
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> _ = torch.nn.init.zeros_(net[1].weight), torch.nn.init.zeros_(net[1].bias)
        >>> loss, logits = CrossEntropy()(net, collate([(torch.ones(3, 2, 2), 1, None)]))
        >>> round(loss.item(), 4)  # ln 2
        0.6931
    """

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of ``model(images)`` and the logits."""
        logits = model(batch.images)
        return F.cross_entropy(logits, batch.labels), logits


class TopGAPObjective:
    """Top-GAP objective: :func:`topgap_loss` of ``model(images, return_cam=True)``.

    Args:
        sparsity: λ of the sparseness term.
    """

    def __init__(self, sparsity: float = TOPGAP_SPARSITY) -> None:
        self.sparsity = check_lambda(sparsity, "sparsity")

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The Top-GAP loss of one forward with ``return_cam=True`` and the logits."""
        inner = getattr(model, "module", model)  # a DistributedDataParallel wrapper's model
        if "return_cam" not in inspect.signature(inner.forward).parameters:
            raise TypeError(f"TopGAPObjective needs a Top-GAP model (forward(x, return_cam=True)), got "
                            f"{type(inner).__name__}; build one with timm.create_model('topgap_resnet18', ...) or "
                            "train with the cross-entropy objective (make_objective('baseline', model)).")
        logits, cam = model(batch.images, return_cam=True)
        return topgap_loss(logits, cam, batch.labels, self.sparsity), logits


REFF_WEIGHT = {"reff": 1e-3, "l1": 1e-6, "l2": 1e-6, "signed": 1e-3, "share": 100.0, "contrastive": 100.0,
               "rrr": 1.0}
"""Default λ per variant: the ReFF supplementary's 1e-6 for L1/L2; 1e-3 for ReFF makes the term ≈ the cross-entropy at
initialisation of a resnet18 on 64-px Textured MNIST (measured: term ≈ 3.4e3, L1 ≈ 8.2e5, L2 ≈ 6.5e5);
the others were chosen on the shifted validation split of the demo's spurious scenario, never on its test
split (``captum-topgap sweep``, docs/reff.md)."""


class ExplanationObjective:
    """Cross-entropy plus an explanation term, with the masks of Algorithm 1 of the ReFF supplementary:

        L = CE(f(x), y) + λ · (1/|B|) Σ_{(x, y, s) ∈ B} l(x, y, s)

    Samples with an annotation use their mask (Eq. 3); the others use the pseudo-annotator's mask G_φ(x)
    (Eq. 5), or — without an annotator — add no explanation term (an all-ones mask). The term is a
    :class:`ReFF` (any variant) or :class:`RRR`.

    :meth:`diagnose` gives the collapse diagnostic of the monitored layers
    (:func:`captum_topgap.evaluate.diagnostics.gradcam_diagnostic`); the training loop logs it every epoch and warns
    when a regularised layer collapses.

    Args:
        term: the :class:`ReFF` or :class:`RRR` term (bound to the model being trained).
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

    def __init__(self, term: ReFF | RRR, weight: float | None = None, annotator: Annotator | None = None) -> None:
        self.term, self.annotator = term, annotator
        self.weight = REFF_WEIGHT[term.variant] if weight is None else check_lambda(weight, "weight")

    @property
    def reff(self) -> ReFF | RRR:
        """The explanation term (the name the first release used)."""
        return self.term

    @property
    def regularised(self) -> list[str]:
        """Names of the layers whose Grad-CAM the term constrains (none for RRR)."""
        return [name for name, w in zip(self.term.names, self.term.weights, strict=True) if w > 0]

    def masks(self, batch: Batch) -> torch.Tensor:
        """Each sample's relevance mask: its annotation, else the annotator's, else all ones."""
        return algorithm_1_masks(batch, self.annotator)

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy + λ · the term with Algorithm 1's masks, and the logits."""
        term, logits = self.term.term_and_logits(batch.images, batch.labels, self.masks(batch), network=model)
        return F.cross_entropy(logits, batch.labels) + self.weight * term, logits

    def diagnose(self, model: nn.Module, batch: Batch) -> dict[str, LayerDiagnostic]:
        """Positive fraction and in-mask share of the true class's Grad-CAM at every monitored layer."""
        layers = dict(zip(self.term.names, self.term.layers, strict=True))
        return gradcam_diagnostic(model, layers, batch.images, batch.labels, self.masks(batch))


class ReFFObjective(ExplanationObjective):
    """Algorithm 1 of the ReFF supplementary as an objective of the training loop (see
    :class:`ExplanationObjective`; the name kept from the first release).

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet18", num_classes=2)
        >>> ReFFObjective(ReFF(model, variant="l1")).weight
        1e-06
    """


class ExpansionObjective:
    """Training objective of the expansion network: MSE reconstruction ‖x̂ − x‖²; logits = the frozen classifier's.

    Example:
        >>> import timm
        >>> net = ExpansionNet(timm.create_model("resnet18", num_classes=3))
        >>> loss, logits = ExpansionObjective()(net, Batch(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), None, None))
        >>> loss.requires_grad, tuple(logits.shape)
        (True, (2, 3))
    """

    uses_labels = False  # a reconstruction: the training loop does not check the labels against the classes

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstruction loss and the frozen classifier's logits."""
        if not isinstance(getattr(model, "module", model), ExpansionNet):
            raise TypeError(f"the expansion objective trains an ExpansionNet, got {type(model).__name__}")
        _, reconstruction = model(batch.images, expand=True)  # through the forward: DDP sees it
        with torch.no_grad():
            logits = model(batch.images)
        return F.mse_loss(reconstruction, batch.images), logits


class PerceptionObjective:
    """Training objective of Perception Visualization's decoder (the classifier frozen):

        L = ‖x̂ − x‖₁ / (C H W) + β · ‖E(x̂) − E(x)‖² / ‖E(x)‖²,      x̂ = D(E(x))

    logits = the frozen classifier's (from the same forward that gives E(x)).

    Args:
        consistency: β of the feature-consistency term (0: a pixel loss alone).

    Example:
        >>> import timm
        >>> decoder = PerceptionDecoder(timm.create_model("resnet18", num_classes=3), image_size=32)
        >>> loss, logits = PerceptionObjective()(decoder, Batch(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), None,
        ...                                                    None))
        >>> loss.requires_grad, tuple(logits.shape)
        (True, (2, 3))
    """

    uses_labels = False  # a reconstruction: the training loop does not check the labels against the classes

    def __init__(self, consistency: float = CONSISTENCY_WEIGHT) -> None:
        self.consistency = check_lambda(consistency, "consistency")

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The pixel + feature-consistency loss and the frozen classifier's logits."""
        decoder = getattr(model, "module", model)
        if not isinstance(decoder, PerceptionDecoder):
            raise TypeError(f"the perception objective trains a PerceptionDecoder, got {type(decoder).__name__}")
        perceived: Perceived = model(batch.images, reconstruct=True)  # through the forward: DDP sees it
        loss = F.l1_loss(perceived.reconstruction, batch.images)
        if self.consistency:
            re_encoded = decoder.encode(perceived.reconstruction)
            loss = loss + self.consistency * feature_consistency(perceived.latent, re_encoded)
        return loss, perceived.logits


ABN_WEIGHT = 10.0
"""γ of the attention-map term: the ReFF supplementary's choice ("γ = 10, which produced the best accuracy within
γ ∈ {1, 10, 100}")."""


def forward_with(model: nn.Module, images: torch.Tensor, flag: str, needs: str, name: str) -> Any:
    """``model(images, flag=True)`` — the second output of a two-headed network (ABN's attention, a box head) —
    after checking that the model (or the one a DistributedDataParallel wrapper holds) takes ``flag``; otherwise a
    TypeError that says what is needed (``needs``) and the timm ``name`` that builds one.

    Example:
        >>> forward_with(nn.Linear(2, 2), torch.ones(1, 2), "return_boxes", "boxes need a box head", "boxhead_resnet18")
        Traceback (most recent call last):
        ...
        TypeError: boxes need a box head (forward(x, return_boxes=True)), got Linear; build one with \
timm.create_model('boxhead_resnet18', ...).
    """
    inner = getattr(model, "module", model)  # a DistributedDataParallel wrapper's model
    if flag not in inspect.signature(inner.forward).parameters:
        raise TypeError(f"{needs} (forward(x, {flag}=True)), got {type(inner).__name__}; build one with "
                        f"timm.create_model('{name}', ...).")
    return model(images, **{flag: True})


def attention_map_loss(attention: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_n ‖M(x_n) − s↓_n‖²: the L2 error between ABN's attention maps M (N, 1, h, w) and the masks
    (N, 1, H, W) area-averaged to M's grid (s↓), summed over positions (Mitsuhara et al. 2019's L_map, as the
    ReFF supplementary uses it).

    Example:
        >>> attention_map_loss(torch.full((1, 1, 2, 2), 0.5), torch.ones(1, 1, 4, 4)).item()  # 4 · 0.5²
        1.0
    """
    if masks.dim() != 4 or masks.shape[0] != attention.shape[0] or masks.shape[1] != 1:
        raise ValueError(f"`masks` must be (N, 1, H, W) for {attention.shape[0]} attention maps, got "
                         f"{tuple(masks.shape)}.")
    resized = F.adaptive_avg_pool2d(masks.to(attention.dtype), (int(attention.shape[-2]), int(attention.shape[-1])))
    return (attention - resized).pow(2).flatten(1).sum(1).mean()


class ABNObjective:
    """Training objective of an Attention Branch Network, with the ReFF supplementary's "ABN-based regularization":

        L = CE(attention logits, y) + CE(perception logits, y) + γ · (1/|B|) Σ_{x ∈ B} ‖M(x) − s↓‖²

    over the samples that have a mask under Algorithm 1 (their annotation, else the pseudo-annotator's); with no
    annotator the unannotated samples add no map term (γ = 0 or no masks: plain ABN, Fukui et al. 2019).

    Args:
        weight: γ (default :data:`ABN_WEIGHT`).
        annotator: the pix2pix pseudo-annotator of Algorithm 1, or ``None``.

    Example:
        >>> import timm
        >>> from captum_topgap.data import collate
        >>> model = timm.create_model("abn_resnet18", num_classes=2)
        >>> batch = collate([(torch.rand(3, 32, 32), 1, None), (torch.rand(3, 32, 32), 0, None)])
        >>> loss, logits = ABNObjective()(model, batch)  # no masks: the two cross-entropies
        >>> out = model(batch.images, return_attention=True)
        >>> expected = F.cross_entropy(out.attention_logits, batch.labels) + F.cross_entropy(out.logits, batch.labels)
        >>> bool(torch.isclose(loss, expected))
        True
    """

    def __init__(self, weight: float = ABN_WEIGHT, annotator: Annotator | None = None) -> None:
        self.weight, self.annotator = check_lambda(weight, "weight"), annotator

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Both branches' cross-entropies + γ · the attention-map term, and the perception logits."""
        out = forward_with(model, batch.images, "return_attention", "ABNObjective needs an Attention Branch Network",
                           "abn_resnet18")
        loss = F.cross_entropy(out.attention_logits, batch.labels) + F.cross_entropy(out.logits, batch.labels)
        if batch.masks.shape[-2:] != batch.images.shape[-2:]:
            raise ValueError(f"`masks` are {tuple(batch.masks.shape[-2:])} for {tuple(batch.images.shape[-2:])} "
                             "images; pass one mask per image at the image's size.")
        has_mask = batch.annotated | (self.annotator is not None)
        if self.weight and bool(has_mask.any()):
            masks = algorithm_1_masks(batch, self.annotator)[has_mask]
            loss = loss + self.weight * attention_map_loss(out.attention[has_mask], masks) * has_mask.float().mean()
        return loss, out.logits


BOX_ALPHA = 0.5
"""α of the classification-and-localisation loss α · S + (1 − α) · R: the lecture leaves it open ("α directly
influences the loss definition, tuning might be difficult"); 0.5 weighs the two tasks alike (not tuned here)."""


def box_loss(predicted: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """R = (1/N) Σ_n ‖b̂_n − b_n‖²₂: the squared error of the predicted (x, y, w, h) in [0, 1] against each mask's
    tight box, normalised by the image (:func:`~captum_topgap.models.boxhead.normalised_boxes`); a sample whose
    mask is empty adds nothing.

    Example:
        >>> masks = torch.zeros(1, 1, 4, 4); masks[..., :2, :2] = 1          # box (0, 0, 0.5, 0.5)
        >>> box_loss(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), masks).item()    # 0.5² + 0.5²
        0.5
    """
    boxes = mask_boxes(masks)
    present = (boxes[:, 0] >= 0).to(predicted.device)
    target = normalised_boxes(boxes, (int(masks.shape[-2]), int(masks.shape[-1]))).to(predicted)
    errors = (predicted - target).pow(2).sum(1) * present
    return errors.sum() / present.sum().clamp(min=1)


class BoxObjective:
    """Classification and localisation (seed 003's lecture): L = α · CE(logits, y) + (1 − α) · R(boxes, masks), the
    boxes regressed by a box-head network (``forward(x, return_boxes=True)``), R = :func:`box_loss`.

    Args:
        alpha: α ∈ [0, 1] (default :data:`BOX_ALPHA`).

    Example:
        >>> import timm
        >>> from captum_topgap.data import collate
        >>> model = timm.create_model("boxhead_resnet18", num_classes=2)
        >>> mask = torch.zeros(1, 32, 32); mask[:, 8:16, 8:24] = 1
        >>> batch = collate([(torch.rand(3, 32, 32), 1, mask), (torch.rand(3, 32, 32), 0, mask)])
        >>> loss, logits = BoxObjective(alpha=1.0)(model, batch)   # α = 1: the cross-entropy alone
        >>> bool(torch.isclose(loss, F.cross_entropy(logits, batch.labels)))
        True
    """

    def __init__(self, alpha: float = BOX_ALPHA) -> None:
        self.alpha = check_float(alpha, "alpha", minimum=0.0, maximum=1.0)

    def __call__(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """α · cross-entropy + (1 − α) · box loss, and the logits."""
        out = forward_with(model, batch.images, "return_boxes", "BoxObjective needs a box-head network",
                           "boxhead_resnet18")
        loss = self.alpha * F.cross_entropy(out.logits, batch.labels)
        return loss + (1 - self.alpha) * box_loss(out.boxes, batch.masks), out.logits


def objective_weight(objective: Objective) -> float:
    """The weight a checkpoint records of its objective: ReFF's or RRR's λ, ABN's γ, the box loss's α (0 for the
    others).

    Example:
        >>> objective_weight(BoxObjective(alpha=0.25)), objective_weight(CrossEntropy())
        (0.25, 0.0)
    """
    return float(getattr(objective, "weight", getattr(objective, "alpha", 0.0)))


METHODS = ("baseline", "topgap", "reff", "rrr", "abn", "boxhead")
"""Training methods of :func:`make_objective` (the expansion network and the perception decoder have their own
objectives)."""


def make_objective(method: str, model: nn.Module, variant: str | None = None, weight: float | None = None,
                   sparsity: float | None = None, annotator: Annotator | None = None,
                   layers: Sequence[str] | None = None, weights: Sequence[float] | None = None) -> Objective:
    """The objective of a training method by name — the one place the CLI, the demo and ``evaluate`` choose it.

    ``"baseline"``: cross-entropy; ``"topgap"``: :class:`TopGAPObjective` (λ = ``sparsity``); ``"reff"``:
    :class:`ReFFObjective` of the ReFF ``variant`` (default ``"reff"``) with λ = ``weight`` over the named
    ``layers`` (default: the four ResNet stages), layer ``weights`` w_l (default: :class:`ReFF`'s for four
    layers, else w_l = 1/L each); ``"rrr"``: the same objective over :class:`RRR`, which has no variant and
    no layer weights (its ``layers`` are only monitored); ``"abn"``: :class:`ABNObjective` (γ = ``weight``);
    ``"boxhead"``: :class:`BoxObjective` (α = ``weight``).
    ``annotator`` supplies the masks of unannotated samples (Algorithm 1).

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet18", num_classes=2)
        >>> objective = make_objective("reff", model, variant="contrastive")
        >>> type(objective).__name__, objective.term.variant
        ('ExplanationObjective', 'contrastive')
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    if method == "baseline":
        return CrossEntropy()
    if method == "topgap":
        return TopGAPObjective(TOPGAP_SPARSITY if sparsity is None else sparsity)
    if method == "abn":
        if variant not in (None, "reff") or layers is not None or weights is not None:
            raise ValueError("`variant`, `layers` and `weights` are ReFF options; 'abn' regularises its one attention "
                             "map. Leave them None.")
        return ABNObjective(ABN_WEIGHT if weight is None else weight, annotator)
    if method == "boxhead":
        if variant not in (None, "reff") or layers is not None or weights is not None or annotator is not None:
            raise ValueError("`variant`, `layers`, `weights` and `annotator` are ReFF options; 'boxhead' regresses the "
                             "masks' boxes. Leave them None (α = `weight`).")
        return BoxObjective(BOX_ALPHA if weight is None else weight)
    modules = None if layers is None else [resolve_layer(model, name) for name in layers]
    if method == "rrr":
        if variant not in (None, "reff"):  # "reff" is the default variant (the CLI passes it for every method)
            raise ValueError(f"`variant` is a ReFF option; 'rrr' has none, got variant={variant!r}. Leave it None, "
                             "or use method='reff' for a ReFF variant.")
        if weights is not None:
            raise ValueError("`weights` (per-layer w_l) is a ReFF option; 'rrr' constrains the input gradient, not "
                             "layers. Leave it None.")
        return ExplanationObjective(RRR(model, modules), weight, annotator)
    if weights is None and modules is not None and len(modules) != len(REFF_WEIGHTS):
        weights = (1 / len(modules),) * len(modules) if modules else ()
    term = ReFF(model, modules, None if weights is None else tuple(weights), variant=variant or "reff")
    return ExplanationObjective(term, weight, annotator)

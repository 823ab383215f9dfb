"""The demo's measures of localisation measured right (Choe et al., CVPR 2020), for the ``wsol`` scenario.

- :func:`threshold_measures`: each explanation method of a model read every way
  :func:`~captum_topgap.evaluate.wsol.wsol_scores` knows (fixed threshold, PxAP, MaxBoxAccV2, a threshold chosen
  on the validation split, top-1 localisation); a box-head network's regressed boxes (BoxAccV2, top-1
  localisation) beside them; a Top-GAP network's kept positions.
- :func:`expansion_measures`: an Expansion CAM expansion network trained over the model, its pipeline scored step by
  step with the authors' constants and with those carried to the image size
  (:func:`~captum_topgap.methods.expansion_cam.scaled_options`), and the classifier's accuracy through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from captum_topgap._state import preserved_state
from captum_topgap.data import collate
from captum_topgap.evaluate.diagnostics import topk_evidence
from captum_topgap.evaluate.heatmaps import method_maps
from captum_topgap.evaluate.metrics import accuracy, box_iou_array, mask_iou, predict
from captum_topgap.evaluate.wsol import box_accuracy, mask_boxes, max_box_accuracy, pxap, wsol_scores
from captum_topgap.methods.expansion_cam import PIPELINE, pipeline_maps, scaled_options
from captum_topgap.models import BoxHeadResNet, ExpansionNet, TopGAPNet
from captum_topgap.models.boxhead import pixel_boxes
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.objectives import ExpansionObjective


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


def threshold_measures(model: nn.Module, methods: Sequence[str], test: Sequence[tuple], val: Sequence[tuple],
                       device: torch.device, options: dict[str, dict[str, Any]] | None = None) -> dict[str, float]:
    """Per explanation method M of the model, on the ``test`` samples with the thresholds chosen on the ``val``
    samples: ``iou/M``, ``pxap/M``, ``max_box_acc_v2/M``, ``iou_val/M`` (``tau_val/M``), ``box_acc_val/M`` and
    ``top1_loc/M`` (:func:`~captum_topgap.evaluate.wsol.wsol_scores`); for a box-head network its own boxes:
    ``box_acc_v2``, ``box_acc@30`` … and ``top1_loc/box`` (class right and IoU ≥ 0.5) — what MaxBoxAccV2 and top-1
    localisation measure of a map, without a threshold to choose; for a Top-GAP network where its kept positions lie.

    Example:
        >>> import timm
        >>> from captum_topgap.data import TexturedMNIST
        >>> data = [TexturedMNIST("test", size=48, limit=4)[i] for i in range(4)]
        >>> model = timm.create_model("boxhead_resnet18", num_classes=10).eval()
        >>> measures = threshold_measures(model, ["cam"], data, data, torch.device("cpu"))
        >>> sorted(key for key in measures if key.startswith(("pxap", "box_acc_v2", "top1")))
        ['box_acc_v2', 'pxap/cam', 'top1_loc/box', 'top1_loc/cam']
    """
    probe = collate(test)
    predictions = predict(model, probe.images.to(device)).cpu()
    measures: dict[str, float] = {}
    for method in methods:
        maps, masks = method_maps(model, method, test, method_kwargs=(options or {}).get(method))
        val_maps, val_masks = method_maps(model, method, val, method_kwargs=(options or {}).get(method))
        scores = wsol_scores(maps, masks, val_maps, val_masks, predictions, probe.labels)
        measures.update({f"{key}/{method}": value for key, value in scores.items()})
    if isinstance(model, BoxHeadResNet):
        with preserved_state(model), torch.no_grad():
            regressed = model.eval().predict_boxes(probe.images.to(device)).cpu()
        size = (int(probe.images.shape[-2]), int(probe.images.shape[-1]))
        boxes, truth = pixel_boxes(regressed, size), mask_boxes(probe.masks)
        measures.update({key.replace("BoxAcc", "box_acc").replace("V2", "_v2"): value
                         for key, value in box_accuracy(boxes, truth).items()})
        hits = torch.from_numpy(box_iou_array(boxes.numpy(), truth.numpy()) >= 0.5)
        measures["top1_loc/box"] = float((hits & (predictions == probe.labels)).double().mean())
    if isinstance(model, TopGAPNet):
        measures.update(topk_measures(model, test, device))
    return measures


def train_expansion(model: nn.Module, images: Sequence[tuple], epochs: int, seed: int, batch_size: int = 32,
                    device: str = "cpu", progress: bool = False) -> tuple[ExpansionNet, float]:
    """An expansion network over the frozen ``model``, trained on ``images`` for ``epochs`` with the reconstruction
    loss (Adam, 1e-3, as docs/expansion_cam.md trains it) and seeded by ``seed``, and its last epoch's
    reconstruction MSE. The classifier is left frozen: restore its flags with
    :func:`~captum_topgap._state.preserved_state` around the call.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ExpansionNet(model).to(device)
    history = train(net, ExpansionObjective(), images, None, TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=1e-3, optimizer="adam", seed=seed, progress=progress, device=device))
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


def expansion_measures(net: ExpansionNet, test: Sequence[tuple], explained: int) -> dict[str, float]:
    """The expansion network's measures: on the first ``explained`` test samples, explaining the true class, every
    step S of the refinement (:data:`~captum_topgap.methods.expansion_cam.PIPELINE`) scored by :func:`step_scores`
    with the authors' constants (``expansion/S/KEY``) and with the pixel constants scaled to the image
    (``expansion_scaled/S/KEY``); the low-res, high-res and refined maps also as ``KEY/expansion_low`` …
    ``KEY/expansion_refined_scaled`` beside the other methods; ``expansion_accuracy``: the classifier's accuracy on
    every test sample through the expansion network.

    Example:
        >>> import timm
        >>> from captum_topgap.data import TexturedMNIST
        >>> net = ExpansionNet(timm.create_model("resnet18", num_classes=10)).eval()
        >>> measures = expansion_measures(net, [TexturedMNIST("test", size=64, limit=2)[i] for i in range(2)], 2)
        >>> measures["expansion/low/pxap"] == measures["pxap/expansion_low"], len(measures)
        (True, 61)
    """
    probe = collate(test[:explained])
    device = next(net.parameters()).device
    images, labels, masks = probe.images.to(device), probe.labels.to(device), probe.masks.bool()
    measures: dict[str, float] = {"expansion_accuracy": accuracy(net, test)}
    for prefix, options in (("expansion", {}), ("expansion_scaled", scaled_options(int(images.shape[-1])))):
        maps = pipeline_maps(net, images, labels, **options)
        for step in PIPELINE:
            for key, value in step_scores(maps[step].cpu(), masks).items():
                measures[f"{prefix}/{step}/{key}"] = value
    for key in ("iou", "pxap", "max_box_acc_v2"):
        for step in ("low", "high", "refined"):
            measures[f"{key}/expansion_{step}"] = measures[f"expansion/{step}/{key}"]
        measures[f"{key}/expansion_refined_scaled"] = measures[f"expansion_scaled/refined/{key}"]
    return measures

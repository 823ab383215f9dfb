"""The set-ups that prepare a training run, shared by the command line, the demo and the sweep.

- :func:`trainable_model`: a timm model by name with the keyword arguments a checkpoint must record to be
  rebuilt exactly (Top-GAP's ``k`` and ``fpn_channels``).
- :func:`training_method`: ``"auto"`` resolved (Top-GAP models train with the Top-GAP objective).
- :func:`explanation_setup`: ReFF's Algorithm 1 set-up — keep the masks of ``n_annotated`` images, fit the
  pix2pix pseudo-annotator on them when some are hidden.
- :func:`expansion_setup`: Expansion CAM's expansion network over a trained classifier checkpoint.
- :func:`perception_setup`: Perception Visualization's decoder over a trained classifier checkpoint.

Example:
    >>> model, kwargs = trainable_model("topgap_resnet18", 10, k=16)
    >>> kwargs, training_method("auto", model)
    ({'num_classes': 10, 'k': 16, 'fpn_channels': 64}, 'topgap')
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import nn

from captum_topgap.data import PartiallyAnnotated, Samples
from captum_topgap.models import ABNResNet, BoxHeadResNet, ExpansionNet, PerceptionDecoder, PseudoAnnotator, TopGAPNet
from captum_topgap.train.checkpoints import build_model, load_checkpoint, load_model


def trainable_model(name: str, num_classes: int, k: int | float | None = None, pretrained: bool = False,
                    **options: Any) -> tuple[nn.Module, dict[str, Any]]:
    """A fresh timm model and the keyword arguments that rebuild it (recorded in the checkpoint metadata).

    ``k`` is Top-GAP's top-k (positions or a fraction); it is refused for other models. ``pretrained``: the
    ImageNet weights of a packaged backbone (``name`` from
    :func:`~captum_topgap.models.pretrained.pretrained_name`: ``pixel_`` or ``topgap_efficientnet_lite*``),
    with a new head of ``num_classes``; the checkpoint's name rebuilds the architecture, its weights the rest.
    ``options``: further timm arguments, recorded with the others (``output_stride=8`` keeps a ResNet's last two
    stages at stride 8 by dilation).

    Example:
        >>> import torch
        >>> model, kwargs = trainable_model("resnet18", 10, output_stride=8)
        >>> kwargs, tuple(model.forward_features(torch.rand(1, 3, 48, 48)).shape[-2:])
        ({'num_classes': 10, 'output_stride': 8}, (6, 6))
    """
    kwargs: dict[str, Any] = {"num_classes": num_classes, **options}
    if name.startswith("topgap_"):
        kwargs["k"] = 64 if k is None else k
    elif k is not None:
        raise ValueError(f"`k` is Top-GAP's top-k; {name!r} is not a topgap_* model (leave k unset).")
    model = build_model(name, pretrained=pretrained, **kwargs)
    if isinstance(model, TopGAPNet):
        kwargs["fpn_channels"] = model.num_features  # rebuild exactly, whatever the default becomes
    return model, kwargs


def training_method(method: str, model: nn.Module) -> str:
    """``"auto"`` -> ``"topgap"`` for a Top-GAP model, ``"abn"`` for an Attention Branch Network, ``"boxhead"`` for
    a box-head network, else ``"baseline"``; ``"topgap"`` needs a Top-GAP model, ``"abn"`` and an ABN go together,
    and so do ``"boxhead"`` and a box-head network.

    Example:
        >>> training_method("auto", nn.Linear(2, 2))
        'baseline'
    """
    if method == "auto":
        kinds = ((TopGAPNet, "topgap"), (ABNResNet, "abn"), (BoxHeadResNet, "boxhead"))
        return next((name for kind, name in kinds if isinstance(model, kind)), "baseline")
    if method == "topgap" and not isinstance(model, TopGAPNet):
        raise ValueError(f"method 'topgap' needs a topgap_* model, got {type(model).__name__}.")
    if (method == "abn") != isinstance(model, ABNResNet):
        raise ValueError(f"method 'abn' trains an abn_* model (both branches), got method {method!r} for "
                         f"{type(model).__name__}; pair --method abn with --model abn_resnet18 (or abn_resnet50).")
    if (method == "boxhead") != isinstance(model, BoxHeadResNet):
        raise ValueError(f"method 'boxhead' trains a boxhead_* model (class and box heads), got method {method!r} for "
                         f"{type(model).__name__}; pair --method boxhead with --model boxhead_resnet18.")
    return method


ANNOTATOR_BATCH = 4
"""The pseudo-annotator's batch size (:meth:`~captum_topgap.models.PseudoAnnotator.fit`'s default)."""


def annotator_epochs_for(n_annotated: int, steps: int, batch_size: int = ANNOTATOR_BATCH) -> int:
    """Epochs of the pseudo-annotator over ``n_annotated`` images that make about ``steps`` optimiser steps:
    ⌈steps / ⌈n / batch⌉⌉, so that the annotators of every n train equally long (a fixed number of epochs
    would give the n = 1 annotator 1/50 of the n = 50 one's updates).

    Example:
        >>> annotator_epochs_for(1, 200), annotator_epochs_for(50, 200)  # 50 images: 13 steps an epoch
        (200, 16)
    """
    return max(1, math.ceil(steps / math.ceil(n_annotated / batch_size)))


def explanation_setup(train_data: Samples, n_annotated: int | None, size: int, annotator_epochs: int = 20,
                      seed: int = 0, progress: bool = True,
                      annotator_steps: int | None = None) -> tuple[PartiallyAnnotated, PseudoAnnotator | None]:
    """ReFF's Algorithm 1 set-up: the training data with all but ``n_annotated`` masks hidden (``None``: all
    kept) and, when masks are hidden, the pseudo-annotator fitted on the annotated ones — for
    ``annotator_epochs``, or with ``annotator_steps`` for the epochs that make that many steps
    (:func:`annotator_epochs_for`).
    """
    if n_annotated == 0:
        raise ValueError("`n_annotated`=0 leaves the pseudo-annotator no image to learn from; pass n ≥ 1 (Algorithm 1 "
                         "needs annotated images), or None to keep every mask.")
    partial = PartiallyAnnotated(train_data, n_annotated, seed=seed)
    if len(partial.annotated_indices) == len(partial):
        return partial, None
    annotator = PseudoAnnotator(size=size)
    n = len(partial.annotated_indices)
    epochs = annotator_epochs if annotator_steps is None else annotator_epochs_for(n, annotator_steps)
    annotator.fit([train_data[i] for i in partial.annotated_indices], epochs=epochs, batch_size=ANNOTATOR_BATCH,
                  seed=seed, progress=progress)
    return partial, annotator


def expansion_setup(localizer: str | Path, device: str = "cpu") -> tuple[ExpansionNet, dict[str, Any]]:
    """An expansion network over the frozen classifier of checkpoint ``localizer``, and the metadata that
    rebuilds it (:func:`~captum_topgap.train.checkpoints.load_model` returns the ``ExpansionNet``).
    """
    meta = load_checkpoint(localizer)["metadata"]
    model = ExpansionNet(load_model(localizer, device))
    return model, {"model": meta["model"], "model_kwargs": meta.get("model_kwargs", {}), "method": "expansion",
                   "localizer": str(localizer)}


def perception_setup(classifier: str | Path, size: int, layer: str | None = None,
                     device: str = "cpu") -> tuple[PerceptionDecoder, dict[str, Any]]:
    """A perception decoder over the frozen classifier of checkpoint ``classifier`` at ``layer`` (default: the
    Grad-CAM layer) for ``size`` × ``size`` images, and the metadata that rebuilds it
    (:func:`~captum_topgap.train.checkpoints.load_model` returns the ``PerceptionDecoder``).
    """
    meta = load_checkpoint(classifier)["metadata"]
    model = PerceptionDecoder(load_model(classifier, device), layer, image_size=size).to(device)
    return model, {"model": meta["model"], "model_kwargs": meta.get("model_kwargs", {}), "method": "perception",
                   "layer": model.layer_name, "image_size": list(model.image_size), "classifier": str(classifier)}

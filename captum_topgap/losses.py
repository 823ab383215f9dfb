"""Loss terms that drop into a plain PyTorch loop, and the objectives of the project's training loop.

An *objective* maps ``(model, batch)`` to ``(loss, logits)``; :func:`captum_topgap.training.train` is one
loop for all of them — the plain classifier, Top-GAP, and (later) ReFF and the expansion network.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap.data.transforms import Batch

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

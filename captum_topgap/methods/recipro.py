"""Recipro-CAM (Byun & Lee, 2022): gradient-free CAM by spatially masking a layer's output.

For the target layer's output F ∈ R^{C×h×w} of one image, copy k keeps only position k (optionally the
feature vector at k spread over its 3 × 3 neighbourhood with the Gaussian weights [1 2 1; 2 4 2; 1 2 1]/16);
the rest of the network runs on the h·w copies and

    CAM[k] = softmax(f_tail(F ⊙ M_k))_c

with c the image's own target. The copies replace the layer's output inside one forward (a hook), so
the network before the layer runs once per chunk; ``chunk_size`` bounds the batch the tail sees.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> recipro_cam(net, net[1], torch.rand(2, 3, 5, 5), torch.tensor([0, 1])).shape
    torch.Size([2, 1, 5, 5])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import check_bool, check_int
from captum_topgap.attribution import LayerMethod, Reshape, capture
from captum_topgap.methods.gradcam import Score, check_score, class_score
from captum_topgap.registry import register_method

GAUSSIAN = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16


def masked_copies(features: torch.Tensor, positions: torch.Tensor, gaussian: bool = False) -> torch.Tensor:
    """Copies of (N, C, h, w) features keeping only the given flat ``positions``: (N·P, C, h, w).

    Example:
        >>> out = masked_copies(torch.ones(1, 1, 2, 2), torch.tensor([0, 3]))
        >>> out[:, 0].tolist()
        [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]
    """
    c, h, w = features.shape[1:]
    onehot = F.one_hot(positions, h * w).to(features.dtype).view(1, -1, 1, h, w)
    copies = (features.unsqueeze(1) * onehot).flatten(0, 1)
    if gaussian:
        kernel = GAUSSIAN.to(features).expand(c, 1, 3, 3)
        copies = F.conv2d(copies, kernel, padding=1, groups=c)
    return copies


def recipro_cam(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                gaussian: bool = False, chunk_size: int = 256, score: Score | None = None) -> torch.Tensor:
    """Recipro-CAM of ``inputs`` for per-image ``target`` at ``layer``'s resolution: (N, 1, h, w).

    ``layer`` must be a cut point of the network: everything after it depends on its output only. ``score``
    replaces the softmax probability of ``target`` by a function of each masked copy's logits and its image's
    index (:data:`~captum_topgap.methods.gradcam.Score`), e.g. a pytorch-grad-cam target's own scalar.
    """
    positions: list[torch.Tensor] = []

    def masked(_index: int, output: torch.Tensor) -> torch.Tensor:
        return masked_copies(output, positions[0], gaussian) if positions else output

    with torch.no_grad(), capture([layer], replace=masked) as seen:
        model(inputs[:1])
        h, w = seen.ready()[0].shape[-2:]
        images_per_chunk = max(1, chunk_size // (h * w))
        positions_per_chunk = min(h * w, max(1, chunk_size))
        maps = torch.empty(len(inputs), h * w, device=inputs.device, dtype=inputs.dtype)
        for first in range(0, len(inputs), images_per_chunk):
            images = slice(first, first + images_per_chunk)
            for start in range(0, h * w, positions_per_chunk):
                positions[:] = [torch.arange(start, min(start + positions_per_chunk, h * w), device=inputs.device)]
                count = len(positions[0])
                logits = model(inputs[images])
                if score is None:
                    probs = logits.softmax(dim=1).view(-1, count, logits.shape[1])
                    labels = target[images].view(-1, 1, 1).expand(-1, count, 1)
                    maps[images, positions[0]] = probs.gather(2, labels)[..., 0]
                else:
                    owners = torch.arange(len(inputs), device=inputs.device)[images].repeat_interleave(count)
                    maps[images, positions[0]] = class_score(logits, target, score, owners).view(-1, count)
    return maps.view(len(inputs), 1, h, w)


@register_method("recipro_cam", origin="captum-topgap", kind="layer",
                 description="Recipro-CAM: gradient-free, target score with the layer masked to each position")
class ReciproCAM(LayerMethod):
    """Recipro-CAM as a Captum attribution: softmax score of the target with the layer output masked to one
    position at a time.

    Args: ``gaussian`` (3 × 3 Gaussian neighbourhood), ``chunk_size`` (largest batch the network tail sees).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> ReciproCAM(net, gaussian=True).attribute(torch.rand(2, 3, 6, 6), target=[0, 1]).shape
        torch.Size([2, 1, 6, 6])
    """

    method_name = "recipro_cam"
    target_score = "probability"  # target=c explains softmax_c; the grad-cam bridge passes a logit as `score`
    supports_reshape = False  # it masks a spatial map position by position; transformer tokens are not one

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, gaussian: bool = False,
                 chunk_size: int = 256, upsample: bool = True, input_size: tuple[int, int, int] | None = None,
                 reshape_transform: Reshape | None = None) -> None:
        super().__init__(model, layer, upsample, input_size, reshape_transform)
        self.gaussian = check_bool(gaussian, "gaussian")
        self.chunk_size = check_int(chunk_size, "chunk_size", minimum=1)

    def core(self, inputs: torch.Tensor, labels: torch.Tensor, score: Score | None = None) -> torch.Tensor:
        """Recipro-CAM of ``labels`` (or of ``score``, see :func:`recipro_cam`) at the layer's resolution."""
        if score is not None and not callable(score):
            raise ValueError(f"`score` of recipro_cam must be a function of the logits and the image index (a "
                             f"pytorch-grad-cam target through the bridge), got {score!r}.")
        check_score(score, self.method_name)
        return recipro_cam(self.network, self.layer, inputs, labels, self.gaussian, self.chunk_size, score)

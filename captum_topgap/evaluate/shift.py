"""Accuracy under distribution shift: common corruptions at five severities and spurious-background groups.

Corruptions follow CIFAR-10-C's parameters (small images), applied to batches of [0, 1] images with
torchvision's functional ops (``imagecorruptions`` would pull ``opencv-python`` beside grad-cam's
``opencv-python-headless``):

============== ======================================== =========================================
name           x' =                                      severity 1 … 5
============== ======================================== =========================================
gaussian_noise clip(x + σ·n), n ~ N(0, 1)                σ = 0.04, 0.06, 0.08, 0.09, 0.10
gaussian_blur  Gaussian blur of standard deviation σ     σ = 0.4, 0.6, 0.7, 0.8, 1.0 (× side / 32)
contrast       (x − x̄)·c + x̄, x̄ the image mean          c = 0.75, 0.5, 0.4, 0.3, 0.15
brightness     clip(x + b)                              b = 0.05, 0.1, 0.15, 0.2, 0.3
jpeg           JPEG round trip at quality q              q = 80, 65, 58, 50, 40
============== ======================================== =========================================

A texture-free shift in the spirit of ImageNet-Sketch (which keeps an object's shape and drops its texture and
colour): :func:`sketch` draws each object's mask as dark strokes on white paper, x' = (1 − s)·paper + s·ink,
the same value in every channel.

Example:
    >>> import torch
    >>> corrupt(torch.full((1, 3, 8, 8), 0.5), "contrast", 5).unique().tolist()
    [0.5]
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from captum_topgap._distributed import all_sum, is_main
from captum_topgap.data.spurious import group_accuracy
from captum_topgap.data.transforms import Samples, batches
from captum_topgap.evaluate.metrics import predict

SEVERITIES = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "jpeg": (80, 65, 58, 50, 40),
}


def _noise(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return (x + sigma * noise).clamp(0, 1)


def _blur(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    sigma = sigma * x.shape[-1] / 32
    kernel = 2 * int(3 * sigma) + 1
    return TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])


def _contrast(x: torch.Tensor, c: float, generator: torch.Generator) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * c + mean


def _brightness(x: torch.Tensor, b: float, generator: torch.Generator) -> torch.Tensor:
    return (x + b).clamp(0, 1)


def _jpeg(x: torch.Tensor, quality: float, generator: torch.Generator) -> torch.Tensor:
    decoded = []
    for image in x.clamp(0, 1).cpu():
        buffer = io.BytesIO()
        TF.to_pil_image(image).save(buffer, format="JPEG", quality=int(quality))
        decoded.append(TF.pil_to_tensor(Image.open(buffer)))
    return (torch.stack(decoded).to(x.dtype) / 255).to(x.device)


CORRUPTIONS: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": _noise, "gaussian_blur": _blur, "contrast": _contrast, "brightness": _brightness,
    "jpeg": _jpeg,
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """A batch of [0, 1] images under corruption ``name`` at ``severity`` 1 … 5 (same seed -> same noise).

    Example:
        >>> x = torch.rand(2, 3, 16, 16)
        >>> torch.equal(corrupt(x, "gaussian_noise", 3, seed=1), corrupt(x, "gaussian_noise", 3, seed=1))
        True
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"corruption {name!r} is not known; use one of {sorted(CORRUPTIONS)}")
    if severity not in range(1, 6):
        raise ValueError(f"severity must be 1 … 5, got {severity}")
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        kind = getattr(images, "dtype", type(images).__name__)
        raise ValueError(f"`images` must be a float tensor of [0, 1] images, got {kind}.")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"`images` must lie in [0, 1] (min {images.min().item():.4g}, max {images.max().item():.4g}); "
                         "divide 8-bit images by 255 first — the corruptions would clamp them.")
    generator = torch.Generator().manual_seed(seed)
    return CORRUPTIONS[name](images, SEVERITIES[name][severity - 1], generator)


def sketch(masks: torch.Tensor, ink: float = 0.0, paper: float = 1.0, channels: int = 3) -> torch.Tensor:
    """Shape-only images from object masks: ``ink`` on the object, ``paper`` elsewhere, in every channel.

        x'(c, p) = ink · s(p) + paper · (1 − s(p))

    Example:
        >>> sketch(torch.tensor([[[[True, False]]]])).tolist()
        [[[[0.0, 1.0]], [[0.0, 1.0]], [[0.0, 1.0]]]]
    """
    if not isinstance(masks, torch.Tensor) or masks.dim() != 4 or masks.shape[1] != 1:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"`masks` must be an (N, 1, H, W) tensor of object masks, got {shape}.")
    for value, name in ((ink, "ink"), (paper, "paper")):
        if not 0 <= value <= 1:
            raise ValueError(f"`{name}` must be a grey level in [0, 1], got {value}.")
    strokes = masks.float()
    return (ink * strokes + paper * (1 - strokes)).expand(-1, channels, -1, -1).contiguous()


def sketch_samples(samples: Sequence[tuple]) -> list[tuple]:
    """Each ``(image, label, mask, ...)`` sample with its image replaced by :func:`sketch` of its mask; the
    label, the mask and anything after them are kept as they are.

    Example:
        >>> sample = (torch.rand(3, 2, 2), 4, torch.tensor([[[True, False], [False, False]]]))
        >>> image, label, mask = sketch_samples([sample])[0]
        >>> image[0].tolist(), label, mask is sample[2]
        ([[0.0, 1.0], [1.0, 1.0]], 4, True)
    """
    for i, sample in enumerate(samples):
        if len(sample) < 3 or sample[2] is None:
            raise ValueError(f"sample {i} has no mask; a sketch is drawn from the object's mask, so the split must "
                             "carry masks (Textured MNIST does; a dataset on disk needs its segmentations).")
    return [(sketch(sample[2].reshape(1, 1, *sample[2].shape[-2:]), channels=sample[0].shape[0])[0],
             *sample[1:]) for sample in samples]


def corruption_accuracy(model: nn.Module, loader: Iterable, corruptions: Sequence[str] | None = None,
                        severities: Sequence[int] = (1, 2, 3, 4, 5), seed: int = 0,
                        progress: bool = True) -> dict[str, object]:
    """Clean accuracy and accuracy under each corruption and severity (exact sums over the loader).

    Returns ``{"clean": acc, "gaussian_noise": {"1": acc, …, "mean": acc}, …}``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> table = corruption_accuracy(net, [(torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 0, 1]))],
        ...                             ["contrast"], [1], progress=False)
        >>> sorted(table["contrast"])
        ['1', 'mean']
    """
    names = list(corruptions or CORRUPTIONS)
    correct = {(name, s): 0 for name in names for s in severities}
    clean: float = 0
    count: float = 0
    device = next(model.parameters()).device
    bar = tqdm(loader, desc="corruptions", disable=not progress or not is_main(), leave=False)
    for index, batch in enumerate(bar):
        images, labels = (batch.images, batch.labels) if hasattr(batch, "images") else batch[:2]
        images, labels = images.to(device), labels.to(device)
        clean += int((predict(model, images) == labels).sum())
        for name, severity in correct:
            shifted = corrupt(images, name, severity, seed=seed + index)
            correct[name, severity] += int((predict(model, shifted) == labels).sum())
        count += len(labels)
    clean, *totals, count = all_sum([clean, *correct.values(), count])
    summed = dict(zip(correct, totals, strict=True))
    table: dict[str, object] = {"clean": clean / max(count, 1)}
    for name in names:
        row = {str(s): summed[name, s] / max(count, 1) for s in severities}
        table[name] = {**row, "mean": sum(row.values()) / len(row)}
    return table


def group_shift(model: nn.Module, data: Samples, batch_size: int = 64, progress: bool = True,
                groups: torch.Tensor | None = None) -> dict[str, float]:
    """Average, per-group and worst-group accuracy on a split with ``.groups`` (e.g. ``SpuriousBackgrounds``),
    or on any split with ``groups`` given (one id per sample).

    Example:
        >>> from captum_topgap.data import SpuriousBackgrounds
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
        >>> scores = group_shift(net, SpuriousBackgrounds("test", size=16, limit=8), progress=False)
        >>> scores["worst_group"] <= scores["average"]
        True
    """
    if groups is None:
        if not hasattr(data, "groups"):
            raise ValueError("data must have .groups (one group id per sample), e.g. SpuriousBackgrounds, or pass "
                             "groups=")
        groups = torch.as_tensor(data.groups)
    device = next(model.parameters()).device
    predictions, labels = [], []
    for batch in tqdm(batches(data, batch_size), desc="groups",
                      disable=not progress or not is_main(), leave=False):
        predictions.append(predict(model, batch.images.to(device)).cpu())
        labels.append(batch.labels.cpu())
    return group_accuracy(torch.cat(predictions), torch.cat(labels), torch.as_tensor(groups))

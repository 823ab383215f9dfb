"""One sample format for every dataset, ``(image, label, mask)``, transforms that keep masks aligned,
and a ``collate`` that batches masks (missing masks allowed, for partly annotated data).

Geometric transforms come from ``torchvision.transforms.v2``, which moves a ``tv_tensors.Mask`` with its
image (nearest-neighbour for the mask):

    >>> from torchvision.transforms import v2
    >>> flip = PairedTransform(v2.RandomHorizontalFlip(p=1.0))
    >>> image, mask = torch.arange(4.0).view(1, 1, 4).expand(3, 1, 4), torch.tensor([[[1, 0, 0, 0]]]).bool()
    >>> flipped, flipped_mask = flip(image, mask)
    >>> flipped[0, 0].tolist(), flipped_mask[0, 0].tolist()
    ([3.0, 2.0, 1.0, 0.0], [False, False, False, True])
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, cast

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

from captum_topgap._checks import check_index, check_int


class PairedTransform:
    """Apply a torchvision v2 transform to an image and its mask together (same random parameters).

    Args:
        transform: a ``torchvision.transforms.v2`` transform (Compose, RandomResizedCrop, Resize, …).
    """

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The transformed image and mask (same random parameters); a missing mask stays ``None``."""
        if mask is None:
            return self.transform(tv_tensors.Image(image)).as_subclass(torch.Tensor), None
        out_image, out_mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask.to(torch.uint8)))
        return out_image.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor).bool()


def resize_pair(size: int) -> PairedTransform:
    """Resize image (bilinear, antialiased) and mask (nearest) to ``size`` × ``size`` (``size`` ≥ 1).

    Example:
        >>> image, mask = resize_pair(4)(torch.rand(3, 8, 8), torch.ones(1, 8, 8, dtype=torch.bool))
        >>> tuple(image.shape), tuple(mask.shape), bool(mask.all())
        ((3, 4, 4), (1, 4, 4), True)
    """
    check_int(size, "size", minimum=1)
    return PairedTransform(v2.Resize((size, size), antialias=True))


class Samples(Protocol):
    """What every dataset here is: indexable ``(image, label, mask_or_None, …)`` samples with a length — a
    torch ``Dataset`` with ``__len__`` or a plain list.
    """

    def __len__(self) -> int:
        """The number of samples."""

    def __getitem__(self, index: int) -> tuple:
        """Sample ``index``."""


def batches(samples: Samples, batch_size: int, indices: Sequence[int] | None = None,
            **options: Any) -> DataLoader:
    """A DataLoader of :class:`Batch` over ``samples`` (or the given ``indices`` of them), collated by
    :func:`collate`; ``options`` go to the DataLoader (``shuffle``, ``sampler``, ``num_workers``, …).

    Example:
        >>> [len(b.labels) for b in batches([(torch.zeros(3, 2, 2), 0, None)] * 5, 2)]
        [2, 2, 1]
    """
    check_int(batch_size, "batch_size", minimum=1)
    dataset = cast(Dataset, samples)
    if indices is not None:
        dataset = Subset(dataset, list(indices))
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate, **options)


class Batch(NamedTuple):
    """A collated batch: images (N, C, H, W), labels (N,), masks float (N, 1, H, W) — zeros where a sample
    has no annotation — and ``annotated`` (N,) bool.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    annotated: torch.Tensor


def class_index(label: object, sample: int) -> int:
    """A sample's label as a class index: a Python or numpy integer, or a one-element integer tensor. Class names,
    floats (``int`` would truncate 1.7 to 1), bools and one-hot vectors are refused, naming the sample and the fix.

    Example:
        >>> class_index(torch.tensor(3), 0)
        3
        >>> class_index("cat", 2)
        Traceback (most recent call last):
        ...
        TypeError: the label of sample 2 is 'cat' (str), not a class index; map class names to indices first, e.g. \
{name: i for i, name in enumerate(sorted(names))}.
    """
    value = label.item() if isinstance(label, torch.Tensor) and label.numel() == 1 and not (
        label.is_floating_point() or label.dtype == torch.bool) else label
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    shown = f"a tensor of shape {tuple(label.shape)} ({label.dtype})" if isinstance(label, torch.Tensor) else \
        f"{label!r} ({type(label).__name__})"
    fix = ("map class names to indices first, e.g. {name: i for i, name in enumerate(sorted(names))}"
           if isinstance(label, str) else "pass integer class indices (for one-hot labels, label.argmax())")
    raise TypeError(f"the label of sample {sample} is {shown}, not a class index; {fix}.")


def collate(samples: Sequence[tuple]) -> Batch:
    """Batch ``(image, label, mask_or_None, ...)`` samples; masks of another size than the image raise, and so do
    labels that are not class indices (:func:`class_index`).

    Example:
        >>> batch = collate([(torch.zeros(3, 2, 2), 1, torch.ones(1, 2, 2, dtype=torch.bool)),
        ...                  (torch.zeros(3, 2, 2), 0, None)])
        >>> batch.masks.sum().item(), batch.annotated.tolist(), batch.labels.tolist()
        (4.0, [True, False], [1, 0])
    """
    if not samples:
        raise ValueError("`samples` is empty; a batch needs at least one sample.")
    sizes = sorted({tuple(s[0].shape) for s in samples})
    if len(sizes) > 1:
        raise ValueError(f"`samples` hold images of {len(sizes)} sizes {sizes[:3]}; a batch needs one size: resize "
                         "them first (captum_topgap.data.resize_pair, or make_dataset(..., size=...)).")
    images = torch.stack([s[0] for s in samples])
    labels = torch.as_tensor([class_index(s[1], i) for i, s in enumerate(samples)], dtype=torch.long)
    masks = torch.zeros(images.shape[0], 1, *images.shape[-2:])
    annotated = torch.zeros(images.shape[0], dtype=torch.bool)
    for i, sample in enumerate(samples):
        mask = sample[2]
        if mask is None:
            continue
        if mask.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"`mask` of sample {i} has size {tuple(mask.shape[-2:])} but its image is "
                             f"{tuple(images.shape[-2:])}; resize both together (captum_topgap.data.resize_pair).")
        masks[i] = mask.reshape(1, *mask.shape[-2:]).float()
        annotated[i] = True
    return Batch(images, labels, masks, annotated)


class PartiallyAnnotated(Dataset):
    """Keep the masks of ``n_annotated`` randomly chosen samples (``None``: all) and hide the others
    (mask ``None``), as in ReFF's experiments with few annotations.

    Example:
        >>> data = [(torch.zeros(3, 2, 2), 0, torch.ones(1, 2, 2, dtype=torch.bool))] * 10
        >>> partial = PartiallyAnnotated(data, 3)
        >>> sum(partial[i][2] is not None for i in range(10)), len(partial.annotated_indices)
        (3, 3)
    """

    def __init__(self, dataset: Samples, n_annotated: int | None = None, seed: int = 0) -> None:
        self.dataset = dataset
        n = len(dataset) if n_annotated is None else check_int(n_annotated, "n_annotated", 0, len(dataset))
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
        self.annotated_indices = sorted(order[:n].tolist())
        self._annotated = set(self.annotated_indices)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple:
        index = check_index(index, len(self))
        image, label, mask, *rest = self.dataset[index]
        return (image, label, mask if index in self._annotated else None, *rest)

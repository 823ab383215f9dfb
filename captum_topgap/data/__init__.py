"""Images with ground-truth masks of the relevant region, from data that exists offline.

Every dataset yields ``(image float [0, 1] (3, H, W), label int, mask bool (1, H, W))``; batch them
with :func:`collate`. :func:`make_dataset` builds the named ones used by the CLI.

Example:
    >>> data = make_dataset("textured-mnist", "test", p=1.0, q=0.0, size=32, limit=2)
    >>> collate([data[0], data[1]]).masks.shape
    torch.Size([2, 1, 32, 32])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum_topgap.data.folders import CIFAR10Images, MaskFolder, OxfordPetMasks
from captum_topgap.data.sources import load_digits, load_fashion_mnist, load_textures, read_gimp_pattern
from captum_topgap.data.spurious import SpuriousBackgrounds, group_accuracy
from captum_topgap.data.textured_mnist import TexturedMNIST
from captum_topgap.data.transforms import (
    Batch,
    PairedTransform,
    PartiallyAnnotated,
    Samples,
    batches,
    collate,
    resize_pair,
)

DATASETS: dict[str, Callable[..., Samples]] = {
    "textured-mnist": lambda split, **kw: TexturedMNIST(split, **kw),
    "spurious-mnist": lambda split, **kw: SpuriousBackgrounds(split, objects="mnist", **kw),
    "spurious-fashion-mnist": lambda split, **kw: SpuriousBackgrounds(split, objects="fashion-mnist", **kw),
    "mask-folder": lambda split, root, **kw: MaskFolder(f"{root}/{split}", **kw),
    "oxford-pet": lambda split, root, **kw: OxfordPetMasks(root, "test" if split == "test" else "trainval", **kw),
    "cifar10": lambda split, root, **kw: CIFAR10Images(root, split, **kw),
}


def make_dataset(name: str, split: str = "train", **kwargs: Any) -> Samples:
    """Dataset ``name`` (one of :data:`DATASETS`) for ``split`` with its keyword arguments."""
    if name not in DATASETS:
        raise ValueError(f"`dataset` must be one of {sorted(DATASETS)}, got {name!r}.")
    return DATASETS[name](split, **kwargs)


__all__ = [
    "DATASETS", "Batch", "CIFAR10Images", "MaskFolder", "OxfordPetMasks", "PairedTransform", "PartiallyAnnotated",
    "Samples",
    "SpuriousBackgrounds", "TexturedMNIST", "batches", "collate", "group_accuracy", "load_digits",
    "load_fashion_mnist", "load_textures", "make_dataset", "read_gimp_pattern", "resize_pair",
]

"""Images with ground-truth masks of the relevant region, from data that exists offline.

Every dataset yields ``(image float [0, 1] (3, H, W), label int, mask bool (1, H, W))``; batch them
with :func:`collate`. :func:`make_dataset` builds the named ones used by the CLI.

Example:
    >>> data = make_dataset("textured-mnist", "test", p=1.0, q=0.0, size=32, limit=2)
    >>> collate([data[0], data[1]]).masks.shape
    torch.Size([2, 1, 32, 32])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from captum_topgap.data.folders import CIFAR10Images, MaskFolder, OxfordPetMasks
from captum_topgap.data.published import CUB200, ISIC2017, Waterbirds
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


class NamedDataset(NamedTuple):
    """One of :data:`DATASETS`: how :func:`make_dataset` builds it for a split, the class it builds, and the
    arguments of that class that ``make_dataset`` sets itself (the others are the caller's keywords).
    """

    build: Callable[..., Samples]
    cls: type
    fixed: tuple[str, ...]


DATASETS: dict[str, NamedDataset] = {
    "textured-mnist": NamedDataset(lambda split, **kw: TexturedMNIST(split, **kw), TexturedMNIST, ("split",)),
    "spurious-mnist": NamedDataset(lambda split, **kw: SpuriousBackgrounds(split, objects="mnist", **kw),
                                   SpuriousBackgrounds, ("split", "objects")),
    "spurious-fashion-mnist": NamedDataset(
        lambda split, **kw: SpuriousBackgrounds(split, objects="fashion-mnist", **kw), SpuriousBackgrounds,
        ("split", "objects")),
    "mask-folder": NamedDataset(lambda split, root, **kw: MaskFolder(f"{root}/{split}", **kw), MaskFolder, ()),
    "oxford-pet": NamedDataset(
        lambda split, root, **kw: OxfordPetMasks(root, "test" if split == "test" else "trainval", **kw),
        OxfordPetMasks, ("split",)),
    "cifar10": NamedDataset(lambda split, root, **kw: CIFAR10Images(root, split, **kw), CIFAR10Images, ("split",)),
    "cub": NamedDataset(lambda split, root, **kw: CUB200(root, split, **kw), CUB200, ("split",)),
    "waterbirds": NamedDataset(lambda split, root, **kw: Waterbirds(root, split, **kw), Waterbirds, ("split",)),
    "isic2017": NamedDataset(lambda split, root, **kw: ISIC2017(root, split, **kw), ISIC2017, ("split",)),
}
"""Every dataset :func:`make_dataset` builds by name; ``cub``, ``waterbirds`` and ``isic2017`` read the papers'
datasets from ``root`` in their published layouts (:mod:`captum_topgap.data.published`)."""


def dataset_arguments(name: str) -> frozenset[str]:
    """The keyword arguments :func:`make_dataset` takes for dataset ``name``.

    Example:
        >>> sorted(dataset_arguments("waterbirds"))[:4]
        ['labels', 'limit', 'root', 'segmentations']
    """
    entry = DATASETS[name]
    return frozenset(inspect.signature(entry.cls).parameters) - frozenset(entry.fixed)


def make_dataset(name: str, split: str = "train", **kwargs: Any) -> Samples:
    """Dataset ``name`` (one of :data:`DATASETS`) for ``split`` with its keyword arguments; a keyword it does not
    take, or a missing ``root``, is refused naming it and what to pass.

    Example:
        >>> len(make_dataset("textured-mnist", "test", size=32, limit=2))
        2
        >>> make_dataset("cifar10")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: make_dataset('cifar10') missing 1 required positional argument: 'root'; pass root=FOLDER, ...
    """
    if name not in DATASETS:
        raise ValueError(f"`dataset` must be one of {sorted(DATASETS)}, got {name!r}.")
    cls = DATASETS[name].cls
    parameters = inspect.signature(cls).parameters
    taken = sorted(dataset_arguments(name))
    unknown = sorted(set(kwargs) - set(taken))
    if unknown:
        raise TypeError(f"make_dataset({name!r}) got an unexpected keyword argument {unknown[0]!r}; it takes "
                        f"{taken}, the arguments of {cls.__name__}.")
    if "root" in parameters and parameters["root"].default is inspect.Parameter.empty and "root" not in kwargs:
        raise TypeError(f"make_dataset({name!r}) missing 1 required positional argument: 'root'; pass "
                        f"root=FOLDER, the folder that holds the dataset (see help({cls.__name__})).")
    return DATASETS[name].build(split, **kwargs)


__all__ = [
    "CUB200",
    "DATASETS",
    "ISIC2017",
    "Batch",
    "CIFAR10Images",
    "MaskFolder",
    "NamedDataset",
    "OxfordPetMasks",
    "PairedTransform",
    "PartiallyAnnotated",
    "Samples",
    "SpuriousBackgrounds",
    "TexturedMNIST",
    "Waterbirds",
    "batches",
    "collate",
    "dataset_arguments",
    "group_accuracy",
    "load_digits",
    "load_fashion_mnist",
    "load_textures",
    "make_dataset",
    "read_gimp_pattern",
    "resize_pair"
]

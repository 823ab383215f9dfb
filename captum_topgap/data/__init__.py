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


BUILDS: dict[str, tuple[type, tuple[str, ...]]] = {
    "textured-mnist": (TexturedMNIST, ("split",)),
    "spurious-mnist": (SpuriousBackgrounds, ("split", "objects")),
    "spurious-fashion-mnist": (SpuriousBackgrounds, ("split", "objects")),
    "mask-folder": (MaskFolder, ()),
    "oxford-pet": (OxfordPetMasks, ("split",)),
    "cifar10": (CIFAR10Images, ("split",)),
}
"""The class each of :data:`DATASETS` builds and the arguments :func:`make_dataset` sets itself: its other
keyword arguments are those ``make_dataset`` takes, ``root`` (the dataset's folder) among them where required."""


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
    cls, fixed = BUILDS[name]
    parameters = inspect.signature(cls).parameters
    taken = sorted(set(parameters) - set(fixed))
    unknown = sorted(set(kwargs) - set(taken))
    if unknown:
        raise TypeError(f"make_dataset({name!r}) got an unexpected keyword argument {unknown[0]!r}; it takes "
                        f"{taken}, the arguments of {cls.__name__}.")
    if "root" in parameters and parameters["root"].default is inspect.Parameter.empty and "root" not in kwargs:
        raise TypeError(f"make_dataset({name!r}) missing 1 required positional argument: 'root'; pass "
                        f"root=FOLDER, the folder that holds the dataset (see help({cls.__name__})).")
    return DATASETS[name](split, **kwargs)


__all__ = [
    "BUILDS", "DATASETS", "Batch", "CIFAR10Images", "MaskFolder", "OxfordPetMasks", "PairedTransform",
    "PartiallyAnnotated", "Samples",
    "SpuriousBackgrounds", "TexturedMNIST", "batches", "collate", "group_accuracy", "load_digits",
    "load_fashion_mnist", "load_textures", "make_dataset", "read_gimp_pattern", "resize_pair",
]

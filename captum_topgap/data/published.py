"""The papers' datasets, read from disk in their published layouts; nothing is ever downloaded.

- :class:`CUB200`: CUB-200-2011 (Wah et al., 2011) with its segmentations and boxes — the Top-GAP
  poster's CUB accuracy and mask IoU.
- :class:`Waterbirds`: Waterbirds (Sagawa et al., ICLR 2020) with its groups — the Top-GAP poster's
  CUB → Waterbirds accuracy; its birds are CUB's, so CUB's segmentations give the masks.
- :class:`ISIC2017`: the ISIC 2017 challenge (Codella et al., ISBI 2018) with its lesion masks — the ReFF
  supplementary's ISIC2017.

Each yields ``(image float [0, 1] (3, H, W), label int, mask bool (1, H, W))`` like the loaders of
:mod:`captum_topgap.data.folders`. A missing or incomplete tree raises one ``FileNotFoundError`` at
construction, naming the first file it expected and the folder ``root`` should be:

    >>> ISIC2017("/nonexistent", "val")
    Traceback (most recent call last):
    ...
    FileNotFoundError: ISIC 2017: expected /nonexistent/ISIC-2017_Validation_Part3_GroundTruth.csv; pass `root` ...
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from captum_topgap._checks import check_index, check_int
from captum_topgap.data.folders import _finish, to_tensor
from captum_topgap.data.textured_mnist import train_val_indices
from captum_topgap.data.transforms import PairedTransform, resize_pair

T = TypeVar("T")

CUB_FOLDER = "CUB_200_2011"
CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt")
WATERBIRDS_FOLDER = "waterbird_complete95_forest2water2"
WATERBIRDS_COLUMNS = ("img_id", "img_filename", "y", "split", "place", "place_filename")
WATERBIRDS_SPLITS = {"train": 0, "val": 1, "test": 2}
#: The file-name prefix of each ISIC 2017 split. The challenge serves the test set as "Test_v2"; the plain
#: "Test" prefix is read when no v2 file is there.
ISIC_PREFIXES = {"train": ("ISIC-2017_Training",), "val": ("ISIC-2017_Validation",),
                 "test": ("ISIC-2017_Test_v2", "ISIC-2017_Test")}
#: The label sets of ISIC 2017, with their number of classes.
ISIC_LABELS = {"diagnosis": 3, "melanoma": 2, "seborrheic_keratosis": 2}


def _check_split(split: str, allowed: Sequence[str]) -> str:
    if split not in allowed:
        names = ", ".join(repr(s) for s in allowed[:-1]) + f" or {allowed[-1]!r}"
        raise ValueError(f"`split` must be {names}, got {split!r}.")
    return split


def _expect(paths: Sequence[Path], dataset: str, hint: str) -> None:
    """The one error of a missing or incomplete tree: the first missing path, how many more, what to pass."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        more = f" (and {len(missing) - 1} more files missing)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{dataset}: expected {missing[0]}{more}; {hint}")


def _read_image(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return to_tensor(image)


def _read_mask(path: Path) -> torch.Tensor:
    """Grey levels above 127: CUB's soft segmentations average several annotators, so this keeps the pixels
    most of them marked; ISIC's masks are 0 or 255.
    """
    with Image.open(path) as mask:
        return torch.from_numpy(np.asarray(mask.convert("L")) > 127)[None]


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    with Image.open(path) as image:
        return image.size


def _xyxy(xywh: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """(N, 4) x, y, width, height boxes as x0, y0, x1, y1, times (N, 2) x and y factors ``scale`` if given."""
    boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
    return boxes if scale is None else boxes * scale.repeat(1, 2)


def _limit(count: int, limit: int | None) -> int:
    return count if limit is None else min(count, check_int(limit, "limit", minimum=1))


def _cub_table(path: Path, layout: str, convert: Callable[[str], T]) -> dict[int, list[T]]:
    """The "id value …" lines of one of CUB's index files as {id: values}; a bad line names file and line."""
    width = len(layout.split()) - 1
    table: dict[int, list[T]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            key, *values = line.split()
            if len(values) != width:
                raise ValueError(line)
            table[int(key)] = [convert(v) for v in values]
        except ValueError:
            raise ValueError(f"CUB-200-2011: {path} line {number} is {line!r}; expected \"{layout}\".") from None
    return table


def _cub_entry(table: dict[int, list[T]], image_id: int, path: Path) -> list[T]:
    if image_id not in table:
        raise ValueError(f"CUB-200-2011: {path} has no line for image {image_id} (listed in images.txt); the "
                         "index files must cover the same images — unpack CUB_200_2011.tgz again.")
    return table[image_id]


class CUB200(Dataset):
    """CUB-200-2011 from its published tree, with the separately published segmentations as masks.

    Labels are ``image_class_labels.txt``'s classes 1–200 minus one (0–199). ``"train"`` and ``"val"`` are
    90/10 of the published training images (``train_test_split.txt`` 1; a permutation seeded by ``seed``, as
    the ReFF supplementary splits Oxford-IIIT Pet), ``"trainval"`` all of them, ``"test"`` the published test
    images (0). A mask pixel is relevant where the soft segmentation is above 127. ``boxes`` holds
    ``bounding_boxes.txt`` as (N, 4) x0, y0, x1, y1 in the output image's pixels (scaled with ``size``);
    ``xywh`` as published, ``files`` the images.txt paths and ``labels`` (N,) long, for the split.

    Args:
        root: the folder that holds ``CUB_200_2011/``.
        split: ``"train"``, ``"val"``, ``"trainval"`` or ``"test"``.
        size: resize image and mask to size × size (boxes follow).
        transform: a :class:`PairedTransform` applied after resizing (not with ``with_boxes``: boxes would
            not follow it).
        segmentations: the folder of the segmentations (``CLASS/FILE.png``); default: ``root/segmentations``,
            else ``root/CUB_200_2011/segmentations``.
        limit: the first ``limit`` images of the split.
        seed: the seed of the train/val permutation.
        with_boxes: return ``(image, label, mask, box)``, box a float (4,) tensor like a row of ``boxes``.

    Example:
        >>> CUB200("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: CUB-200-2011: expected /nonexistent/CUB_200_2011/images.txt (and 3 more files \
missing); pass `root` (--root) the folder that holds CUB_200_2011/ ...

    With the dataset on disk (a placeholder path)::

        data = CUB200("/data/cub", "test", size=224, with_boxes=True)
        image, label, mask, box = data[0]
    """

    n_classes = 200

    def __init__(self, root: str | Path, split: str = "train", size: int | None = None,
                 transform: PairedTransform | None = None, segmentations: str | Path | None = None,
                 limit: int | None = None, seed: int = 0, with_boxes: bool = False) -> None:
        _check_split(split, ("train", "val", "trainval", "test"))
        if size is not None:
            check_int(size, "size", minimum=1)
        seed = check_int(seed, "seed", minimum=0)
        if with_boxes and transform is not None:
            raise ValueError("`with_boxes` and `transform` cannot be combined: boxes follow `size` but not a "
                             "transform; resize with `size` and transform the boxes yourself.")
        index = Path(root) / CUB_FOLDER
        files = [index / name for name in CUB_FILES]
        _expect(files, "CUB-200-2011", f"pass `root` (--root) the folder that holds {CUB_FOLDER}/ (the published "
                                       "CUB_200_2011.tgz, unpacked).")
        images, labels = _cub_table(files[0], "id path", str), _cub_table(files[1], "id label", int)
        is_train, boxes = _cub_table(files[2], "id is_train", int), _cub_table(files[3], "id x y width height", float)
        rows: list[tuple[str, int, bool, list[float]]] = []
        for image_id, (path,) in images.items():
            (label,), (train,) = _cub_entry(labels, image_id, files[1]), _cub_entry(is_train, image_id, files[2])
            if not 1 <= label <= self.n_classes or train not in (0, 1):
                raise ValueError(f"CUB-200-2011: image {image_id} has class {label} and is_train {train}; expected "
                                 f"a class in 1–{self.n_classes} ({files[1]}) and is_train 0 or 1 ({files[2]}).")
            rows.append((path, label - 1, train == 1, _cub_entry(boxes, image_id, files[3])))
        if split == "test":
            rows = [r for r in rows if not r[2]]
        else:
            training = [r for r in rows if r[2]]
            chosen = range(len(training)) if split == "trainval" else train_val_indices(len(training), split, seed)
            rows = [training[i] for i in chosen]
        rows = rows[:_limit(len(rows), limit)]
        self.files = [r[0] for r in rows]
        self.labels = torch.tensor([r[1] for r in rows], dtype=torch.long)
        self.xywh = torch.tensor([r[3] for r in rows], dtype=torch.float32).reshape(-1, 4)
        self.image_root = index / "images"
        _expect([self.image_root / f for f in self.files], "CUB-200-2011",
                "the images listed in images.txt must be under CUB_200_2011/images/; unpack CUB_200_2011.tgz again.")
        if segmentations is None:
            found = [p for p in (Path(root) / "segmentations", index / "segmentations") if p.is_dir()]
            segmentations = found[0] if found else Path(root) / "segmentations"
        self.segmentation_root = Path(segmentations)
        _expect([self.segmentation(i) for i in range(len(self.files))], "CUB-200-2011",
                "pass `segmentations` the folder of CUB's segmentations (segmentations.tgz, published separately: "
                f"CLASS/FILE.png; by default {root}/segmentations/ or {index}/segmentations/).")
        self.size, self.transform, self.with_boxes = size, transform, with_boxes

    def segmentation(self, index: int) -> Path:
        """The segmentation file of image ``index``: its images.txt path with ``.png``, under the segmentations."""
        return self.segmentation_root / Path(self.files[index]).with_suffix(".png")

    @cached_property
    def boxes(self) -> torch.Tensor:
        """(N, 4) float boxes x0, y0, x1, y1 in the output image's pixels; with ``size``, the first access reads
        each image's header for its original size.
        """
        if self.size is None:
            return _xyxy(self.xywh, None)
        sizes = [_image_size(self.image_root / f) for f in self.files]
        return _xyxy(self.xywh, self.size / torch.tensor(sizes, dtype=torch.float32).reshape(-1, 2))

    def __len__(self) -> int:
        """The number of images in the split."""
        return len(self.files)

    def __getitem__(self, index: int) -> tuple:
        """``(image, label, mask)``, and the box with ``with_boxes``."""
        index = check_index(index, len(self))
        image = _read_image(self.image_root / self.files[index])
        height, width = image.shape[-2:]
        image, mask = _finish(image, _read_mask(self.segmentation(index)), self.size, self.transform,
                              self.segmentation(index))
        label = int(self.labels[index])
        if not self.with_boxes:
            return image, label, mask
        scale = None if self.size is None else self.size / torch.tensor([[width, height]], dtype=torch.float32)
        return image, label, mask, _xyxy(self.xywh[index:index + 1], scale)[0]


class Waterbirds(Dataset):
    """Waterbirds (Sagawa et al., ICLR 2020) from its ``metadata.csv``: CUB birds pasted on Places backgrounds.

    Splits are the metadata's ``split`` 0/1/2 = ``"train"``/``"val"``/``"test"``. ``labels="waterbird"``
    gives ``y`` (0 landbird, 1 waterbird); ``labels="species"`` gives CUB's class (0–199, from the image's
    ``NNN.Name/`` folder), for testing a CUB classifier on Waterbirds as the Top-GAP poster does.
    ``groups`` is ``2 · y + place`` (place 0 land, 1 water), the Waterbirds paper's four groups, for
    :func:`captum_topgap.data.group_accuracy`. Waterbirds ships no masks; its images are CUB's at CUB's
    size, so with ``segmentations`` (CUB's segmentation folder) the mask is the bird's segmentation > 127
    found by file name; without it the mask is ``None`` (not annotated). ``files`` holds the split's
    ``img_filename`` values and ``labels`` (N,) long its labels.

    Args:
        root: the folder that holds ``waterbird_complete95_forest2water2/`` (or that folder itself, or any
            folder with a ``metadata.csv`` in this format, such as WILDS' ``waterbirds_v1.0``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: resize image and mask to size × size; transform: a :class:`PairedTransform` after resizing.
        segmentations: CUB's segmentation folder (``CLASS/FILE.png``), or ``None`` for no masks.
        labels: ``"waterbird"`` or ``"species"``.
        limit: the first ``limit`` images of the split.
        with_groups: return ``(image, label, mask, group)``, as :class:`SpuriousBackgrounds` does.

    Example:
        >>> Waterbirds("/nonexistent")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Waterbirds: expected /nonexistent/waterbird_complete95_forest2water2/metadata.csv; ...

    With the dataset on disk (placeholder paths)::

        data = Waterbirds("/data", "test", size=224, segmentations="/data/segmentations", with_groups=True)
        image, label, mask, group = data[0]
    """

    def __init__(self, root: str | Path, split: str = "train", size: int | None = None,
                 transform: PairedTransform | None = None, segmentations: str | Path | None = None,
                 labels: str = "waterbird", limit: int | None = None, with_groups: bool = False) -> None:
        code = WATERBIRDS_SPLITS[_check_split(split, tuple(WATERBIRDS_SPLITS))]
        if labels not in ("waterbird", "species"):
            raise ValueError(f"`labels` must be 'waterbird' or 'species', got {labels!r}.")
        if size is not None:
            check_int(size, "size", minimum=1)
        folder = Path(root) if (Path(root) / "metadata.csv").exists() else Path(root) / WATERBIRDS_FOLDER
        metadata = folder / "metadata.csv"
        _expect([metadata], "Waterbirds", f"pass `root` (--root) the folder that holds {WATERBIRDS_FOLDER}/ (the "
                                          "Waterbirds tarball of Sagawa et al., unpacked) or that folder itself.")
        rows: list[tuple[str, int, int, int]] = []
        with metadata.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if not set(WATERBIRDS_COLUMNS) <= set(reader.fieldnames or ()):
                raise ValueError(f"Waterbirds: {metadata} has the columns {reader.fieldnames}; expected "
                                 f"{','.join(WATERBIRDS_COLUMNS)}.")
            for row in reader:
                try:
                    y, row_split, place = int(row["y"]), int(row["split"]), int(row["place"])
                    if y not in (0, 1) or row_split not in (0, 1, 2) or place not in (0, 1):
                        raise ValueError(row)
                except ValueError:
                    raise ValueError(f"Waterbirds: {metadata} line {reader.line_num} has y={row['y']!r}, "
                                     f"split={row['split']!r}, place={row['place']!r}; expected y 0 or 1, split 0, "
                                     "1 or 2, place 0 or 1.") from None
                if row_split == code:
                    species = self._species(row["img_filename"], metadata) if labels == "species" else 0
                    rows.append((row["img_filename"], y, place, species))
        rows = rows[:_limit(len(rows), limit)]
        self.files = [r[0] for r in rows]
        birds = torch.tensor([r[1] for r in rows], dtype=torch.long)
        self.groups = 2 * birds + torch.tensor([r[2] for r in rows], dtype=torch.long)
        self.labels = birds if labels == "waterbird" else torch.tensor([r[3] for r in rows], dtype=torch.long)
        self.n_classes = 2 if labels == "waterbird" else CUB200.n_classes
        self.folder = folder
        _expect([folder / f for f in self.files], "Waterbirds",
                "the images named by metadata.csv's img_filename must be under the metadata's folder; unpack the "
                "Waterbirds tarball again.")
        self.segmentation_root = None if segmentations is None else Path(segmentations)
        if self.segmentation_root is not None:
            _expect([self.segmentation(i) for i in range(len(self.files))], "Waterbirds",
                    "pass `segmentations` the folder of CUB-200-2011's segmentations (CLASS/FILE.png, "
                    "segmentations.tgz), or None for no masks.")
        self.size, self.transform, self.with_groups = size, transform, with_groups

    @staticmethod
    def _species(filename: str, metadata: Path) -> int:
        number = filename.split("/")[0].split(".")[0]
        if not number.isdigit() or not 1 <= int(number) <= CUB200.n_classes:
            raise ValueError(f"Waterbirds: {metadata} names {filename!r}; labels='species' needs CUB's class "
                             "folder 'NNN.Name/' (001–200) in front of every img_filename.")
        return int(number) - 1

    def segmentation(self, index: int) -> Path:
        """The CUB segmentation of image ``index`` (same class folder and file name, ``.png``)."""
        if self.segmentation_root is None:
            raise ValueError("this Waterbirds has no masks; pass `segmentations` CUB-200-2011's segmentation folder.")
        return self.segmentation_root / Path(self.files[index]).with_suffix(".png")

    def __len__(self) -> int:
        """The number of images in the split."""
        return len(self.files)

    def __getitem__(self, index: int) -> tuple:
        """``(image, label, mask or None)``, and the group with ``with_groups``."""
        index = check_index(index, len(self))
        image = _read_image(self.folder / self.files[index])
        mask: torch.Tensor | None = None
        if self.segmentation_root is not None:
            image, mask = _finish(image, _read_mask(self.segmentation(index)), self.size, self.transform,
                                  self.segmentation(index))
        else:
            if self.size is not None:
                image = resize_pair(self.size)(image, None)[0]
            if self.transform is not None:
                image = self.transform(image, None)[0]
        label = int(self.labels[index])
        return (image, label, mask, int(self.groups[index])) if self.with_groups else (image, label, mask)


class ISIC2017(Dataset):
    """The ISIC 2017 challenge's images, lesion masks (Part 1) and diagnoses (Part 3), as published.

    Splits: ``"train"`` (2 000 images), ``"val"`` (150) and ``"test"`` (600), the ReFF supplementary's
    ISIC2017. Labels from ``image_id,melanoma,seborrheic_keratosis``: ``"diagnosis"`` gives 0 nevus (neither),
    1 melanoma, 2 seborrheic keratosis; ``"melanoma"`` and ``"seborrheic_keratosis"`` the challenge's two
    binary tasks. The mask is the lesion (segmentation > 127). ``image_ids`` and ``labels`` (N,) long hold
    the split's rows.

    Args:
        root: the folder that holds the challenge's files side by side (``ISIC-2017_Training_Data/``,
            ``ISIC-2017_Training_Part1_GroundTruth/``, ``ISIC-2017_Training_Part3_GroundTruth.csv``, likewise
            ``Validation`` and ``Test_v2``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: resize image and mask to size × size; transform: a :class:`PairedTransform` after resizing.
        labels: ``"diagnosis"``, ``"melanoma"`` or ``"seborrheic_keratosis"``.
        limit: the first ``limit`` images of the split.

    Example:
        >>> ISIC2017("/nonexistent", labels="nevus")
        Traceback (most recent call last):
        ...
        ValueError: `labels` must be one of ['diagnosis', 'melanoma', 'seborrheic_keratosis'], got 'nevus'.

    With the dataset on disk (a placeholder path)::

        data = ISIC2017("/data/isic2017", "test", size=224, labels="melanoma")
        image, label, mask = data[0]
    """

    def __init__(self, root: str | Path, split: str = "train", size: int | None = None,
                 transform: PairedTransform | None = None, labels: str = "diagnosis",
                 limit: int | None = None) -> None:
        prefixes = ISIC_PREFIXES[_check_split(split, tuple(ISIC_PREFIXES))]
        if labels not in ISIC_LABELS:
            raise ValueError(f"`labels` must be one of {sorted(ISIC_LABELS)}, got {labels!r}.")
        if size is not None:
            check_int(size, "size", minimum=1)
        root = Path(root)
        prefix = next((p for p in prefixes if (root / f"{p}_Part3_GroundTruth.csv").exists()), prefixes[0])
        table = root / f"{prefix}_Part3_GroundTruth.csv"
        _expect([table], "ISIC 2017", f"pass `root` (--root) the folder that holds the challenge's {prefix}_Data/, "
                                      f"{prefix}_Part1_GroundTruth/ and {prefix}_Part3_GroundTruth.csv, unpacked.")
        rows: list[tuple[str, int]] = []
        with table.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if not {"image_id", "melanoma", "seborrheic_keratosis"} <= set(reader.fieldnames or ()):
                raise ValueError(f"ISIC 2017: {table} has the columns {reader.fieldnames}; expected "
                                 "image_id,melanoma,seborrheic_keratosis.")
            for row in reader:
                try:
                    melanoma, keratosis = float(row["melanoma"]), float(row["seborrheic_keratosis"])
                    if {melanoma, keratosis} - {0.0, 1.0} or melanoma + keratosis > 1:
                        raise ValueError(row)
                except ValueError:
                    raise ValueError(f"ISIC 2017: {table} line {reader.line_num} has melanoma={row['melanoma']!r}, "
                                     f"seborrheic_keratosis={row['seborrheic_keratosis']!r}; expected 0 or 1 each, "
                                     "not both 1.") from None
                label = {"diagnosis": int(melanoma) + 2 * int(keratosis), "melanoma": int(melanoma),
                         "seborrheic_keratosis": int(keratosis)}[labels]
                rows.append((row["image_id"], label))
        rows = rows[:_limit(len(rows), limit)]
        self.image_ids = [r[0] for r in rows]
        self.labels = torch.tensor([r[1] for r in rows], dtype=torch.long)
        self.n_classes = ISIC_LABELS[labels]
        self.image_root, self.mask_root = root / f"{prefix}_Data", root / f"{prefix}_Part1_GroundTruth"
        _expect([self.image_root / f"{i}.jpg" for i in self.image_ids], "ISIC 2017",
                f"every image_id of {table.name} needs its image in {prefix}_Data/; unpack {prefix}_Data.zip again.")
        _expect([self.mask_root / f"{i}_segmentation.png" for i in self.image_ids], "ISIC 2017",
                f"every image_id of {table.name} needs its lesion mask in {prefix}_Part1_GroundTruth/; unpack "
                f"{prefix}_Part1_GroundTruth.zip.")
        self.size, self.transform = size, transform

    def __len__(self) -> int:
        """The number of images in the split."""
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        """``(image, label, lesion mask)``."""
        index = check_index(index, len(self))
        image_id = self.image_ids[index]
        mask_path = self.mask_root / f"{image_id}_segmentation.png"
        image, mask = _finish(_read_image(self.image_root / f"{image_id}.jpg"), _read_mask(mask_path), self.size,
                              self.transform, mask_path)
        return image, int(self.labels[index]), mask

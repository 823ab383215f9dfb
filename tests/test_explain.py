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

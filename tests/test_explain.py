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

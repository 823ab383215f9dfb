"""Top-GAP networks: timm registration and contract (tested the way timm tests its own models), the CAM."""

from __future__ import annotations

import re

import pytest
import timm
import torch
import torch.nn.functional as F

import captum_topgap  # noqa: F401  (registers the names)
from captum_topgap.models import TopGAPNet, topgap, topgap_net

NAMES = ["topgap_convnext_tiny", "topgap_efficientnet_b0", "topgap_efficientnet_lite0", "topgap_efficientnet_lite1",
         "topgap_efficientnet_lite2", "topgap_preact_resnet18", "topgap_resnet18", "topgap_resnet50", "topgap_vgg16"]
PLAIN = {"topgap_resnet18": "resnet18", "topgap_resnet50": "resnet50", "topgap_efficientnet_b0": "efficientnet_b0",
         "topgap_convnext_tiny": "convnext_tiny", "topgap_vgg16": "vgg16",
         "topgap_preact_resnet18": "preact_resnet18_cifar",
         **{f"topgap_efficientnet_lite{i}": f"pixel_efficientnet_lite{i}" for i in range(3)}}


def test_names_are_listed_by_timm() -> None:
    assert timm.list_models("topgap_*") == NAMES
    assert "preact_resnet18_cifar" in timm.list_models("preact*")


@pytest.mark.parametrize("name", NAMES)
def test_timm_model_contract(name: str) -> None:
    model = timm.create_model(name, num_classes=5, k=4).eval()
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg and len(cfg["mean"]) == len(cfg["std"]) == 3
    assert model.num_classes == 5 and cfg["architecture"] == name  # cfg["num_classes"]: the weights', as in timm
    side = 32 if "preact" in name else 64
    x = torch.randn(2, 3, side, side)
    features = model.forward_features(x)
    assert features.shape[1] == model.num_features
    logits = model(x)
    assert logits.shape == (2, 5) and torch.allclose(model.forward_head(features), logits)
    assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    state = model.state_dict()
    assert cfg["classifier"] + ".weight" in state and cfg["first_conv"] + ".weight" in state
    assert model.get_classifier() is model.head
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)
    model.reset_classifier(7)
    assert model(x).shape == (2, 7) and model.num_classes == 7


@pytest.mark.parametrize("name", ["topgap_resnet18", "topgap_preact_resnet18"])
def test_backward_reaches_every_parameter(name: str) -> None:
    model = timm.create_model(name, num_classes=3, k=4).train()
    side = 32 if "preact" in name else 64
    model(torch.randn(2, 3, side, side)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]  # not connected to the logits
    assert not missing  # (zeros are legitimate: timm zero-initialises each residual block's last BN scale)


def test_cam_is_56_by_56_for_224_inputs_and_one_forward_gives_both() -> None:
    model = timm.create_model("topgap_resnet18", num_classes=10, k=64).eval()
    x = torch.rand(1, 3, 224, 224)
    logits, cam = model(x, return_cam=True)
    assert cam.shape == (1, 10, 56, 56) and logits.shape == (1, 10)
    assert torch.equal(model.cam(x), cam)
    assert torch.equal(logits, model.pool(cam)) and torch.equal(model(x), logits)


@pytest.mark.parametrize("name", ["topgap_resnet18", "topgap_preact_resnet18"])
def test_stage_cams_split_the_cam_exactly_over_the_stages(name: str) -> None:
    model = timm.create_model(name, num_classes=3, k=4)
    for _ in range(2):  # BN's running statistics away from their initial values
        model(torch.rand(4, 3, 32, 32))
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        parts = model.stage_cams(x)
        assert parts.shape[1] == len(model.stages) + 1
        assert torch.allclose(parts.sum(1), model.cam(x), atol=1e-4)
        for lateral in model.lateral[:-1]:  # only the deepest stage left: it owns every stage term
            lateral.weight.zero_()
            lateral.bias.zero_()
        parts = model.stage_cams(x)
        assert torch.count_nonzero(parts[:, :-2]) == 0 and torch.count_nonzero(parts[:, -2]) > 0
        assert torch.allclose(parts.sum(1), model.cam(x), atol=1e-4)
    with pytest.raises(RuntimeError, match=r"needs the model in eval mode .* call model.eval\(\)"):
        model.train().stage_cams(x)


def test_preact_cam_has_full_resolution_on_32_pixels() -> None:
    model = timm.create_model("topgap_preact_resnet18", k=64).eval()
    assert model.cam(torch.rand(1, 3, 32, 32)).shape == (1, 10, 32, 32)


def test_k_equal_to_all_positions_is_a_gap_network() -> None:
    """With k = H·W the logits are GAP of the CAM, which (1×1 conv is linear) is the head applied to GAP."""
    model = topgap("resnet18", num_classes=4, k=1.0).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        gap_then_head = model.head(F.adaptive_avg_pool2d(features, 1)).flatten(1)
        assert torch.allclose(model(x), gap_then_head, atol=1e-5)
        assert torch.allclose(model(x), model.cam(x).mean(dim=(2, 3)), atol=1e-6)


def test_k_counts_cam_positions() -> None:
    model = topgap("resnet18", num_classes=2, k=256).eval()
    with pytest.raises(ValueError, match=r"`k` = 256 exceeds the 64 positions"):
        model(torch.rand(1, 3, 32, 32))
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 2)


def test_pretrained_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"topgap_resnet18: pretrained=True is not available — no Top-GAP weights"):
        timm.create_model("topgap_resnet18", pretrained=True)


def test_parameter_table_in_the_docstring_is_true() -> None:
    rows = re.findall(r"\| (\w+)(?: \(CIFAR\))? +\| +([\d ]+?) +\| +([\d ]+?) +\|", topgap_net.__doc__)
    assert len(rows) == 6
    for plain, plain_count, ours_count in rows:
        name = "topgap_" + plain
        ours = sum(p.numel() for p in timm.create_model(name, num_classes=10, k=64).parameters())
        base = sum(p.numel() for p in timm.create_model(PLAIN[name], num_classes=10).parameters())
        assert (base, ours) == (int(plain_count.replace(" ", "")), int(ours_count.replace(" ", ""))), name


def test_any_timm_cnn_and_bad_settings() -> None:
    model = topgap("mobilenetv3_small_050", num_classes=3, k=0.1)
    assert isinstance(model, TopGAPNet) and model.cam(torch.rand(1, 3, 64, 64)).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"`min_reduction` = 64 keeps no stage"):
        topgap("resnet18", num_classes=3, min_reduction=64)


def test_features_only_gives_the_backbone_stages_like_timm() -> None:
    model = timm.create_model("topgap_resnet18", features_only=True, out_indices=(1, 3)).eval()
    plain = timm.create_model("resnet18", features_only=True, out_indices=(1, 3)).eval()
    x = torch.rand(1, 3, 64, 64)
    shapes = [tuple(f.shape) for f in model(x)]
    assert shapes == [tuple(f.shape) for f in plain(x)] == [(1, 64, 16, 16), (1, 256, 4, 4)]
    assert model.feature_info.channels() == [64, 256] and model.feature_info.reduction() == [4, 16]


def test_feature_info_and_forward_intermediates() -> None:
    model = timm.create_model("topgap_resnet18", num_classes=3, k=4).eval()
    assert [info["module"] for info in model.feature_info][-1] == "backbone.layer4"
    assert all(isinstance(model.get_submodule(info["module"]), torch.nn.Module) for info in model.feature_info)
    x = torch.rand(2, 3, 64, 64)
    fused, stages = model.forward_intermediates(x, indices=2)
    assert torch.equal(fused, model.forward_features(x))
    assert [s.shape[1] for s in stages] == [info["num_chs"] for info in model.feature_info[-2:]]
    assert len(model.forward_intermediates(x, indices=[0], intermediates_only=True)) == 1
    with pytest.raises(ValueError, match=r"`output_fmt` must be 'NCHW'"):
        model.forward_intermediates(x, output_fmt="NHWC")


def test_grad_checkpointing_recomputes_stages_and_changes_nothing_else() -> None:
    torch.manual_seed(0)
    model = timm.create_model("topgap_resnet18", num_classes=3, k=4).train()
    x = torch.rand(2, 3, 64, 64)
    calls = []
    block = next(m for name, m in model.named_modules() if name.endswith("layer2.0"))  # timm checkpoints blocks
    block.register_forward_hook(lambda *_: calls.append(1))

    def gradients(checkpointing: bool) -> list[torch.Tensor]:
        model.set_grad_checkpointing(checkpointing)
        model.zero_grad()
        torch.manual_seed(1)
        model(x).sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = gradients(False)
    calls.clear()
    checkpointed = gradients(True)
    assert len(calls) == 2  # forward, then again in the backward pass
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(plain, checkpointed, strict=True))


def test_pretrained_cfg_overlay_and_kwargs_go_through_timm() -> None:
    model = timm.create_model("topgap_resnet18", num_classes=3, k=4,
                              pretrained_cfg_overlay={"input_size": (3, 96, 96), "crop_pct": 1.0})
    config = timm.data.resolve_data_config({}, model=model)
    assert config["input_size"] == (3, 96, 96) and config["crop_pct"] == 1.0
    dropping = timm.create_model("topgap_resnet18", num_classes=3, k=4, drop_rate=0.5, drop_path_rate=0.1)
    assert dropping.drop.p == 0.5 and any(type(m).__name__ == "DropPath" for m in dropping.modules())
    x = torch.rand(1, 3, 64, 64)
    dropping.train()
    assert not torch.equal(dropping(x), dropping(x))
    dropping.eval()
    assert torch.equal(dropping(x), dropping(x))
    with pytest.raises(ValueError, match=r"`global_pool`='avg' is not available: Top-GAP pools"):
        timm.create_model("topgap_resnet18", global_pool="avg")
    with pytest.raises(ValueError, match=r"`global_pool`='max' is not available"):
        dropping.reset_classifier(3, global_pool="max")


@pytest.mark.parametrize("name", ["topgap_resnet18", "topgap_preact_resnet18"])
def test_torch_jit_script_gives_the_same_logits(name: str) -> None:
    model = timm.create_model(name, num_classes=3, k=4).eval()
    x = torch.rand(2, 3, 32, 32)
    scripted = torch.jit.script(model)
    assert torch.allclose(scripted(x), model(x), atol=1e-5)


@pytest.mark.parametrize(("arguments", "error", "message"), [
    (lambda z, c, y: (z, None, y), TypeError, r"`cam` must be a float tensor of shape \(N, C, H, W\), got NoneType"),
    (lambda z, c, y: (c, z, y), ValueError, r"`logits` has shape \(2, 3, 4, 4\) and `cam` \(2, 3\): the arguments "
                                            r"look swapped"),
    (lambda z, c, y: (z, c[:1], y), ValueError, r"`cam` must be \(N, C, H, W\) with the \(N, C\) = \(2, 3\)"),
    (lambda z, c, y: (z, c[:, :2], y), ValueError, r"`cam` must be \(N, C, H, W\) with the \(N, C\) = \(2, 3\)"),
    (lambda z, c, y: (z, c.flatten(2), y), ValueError, r"`cam` must be \(N, C, H, W\)"),
    (lambda z, c, y: (z[:0], c[:0], y[:0]), ValueError, r"`logits` is an empty batch \(N = 0\)"),
    (lambda z, c, y: (z, c, y.float()), ValueError, r"`target` must be \(2,\) integer class indices, got a torch.f"),
    (lambda z, c, y: (z, c, torch.eye(3)[y].long()), ValueError, r"for one-hot labels pass target.argmax\(1\)"),
    (lambda z, c, y: (z.long(), c, y), TypeError, r"`logits` must be a float tensor of shape \(N, C\), got "
                                                  r"torch.int64 tensor"),
])
def test_topgap_loss_names_the_bad_argument(arguments, error, message) -> None:
    from captum_topgap.train.losses import topgap_loss

    cam = torch.rand(2, 3, 4, 4)
    logits, target = cam.flatten(2).mean(-1), torch.tensor([0, 2])
    with pytest.raises(error, match=message):
        topgap_loss(*arguments(logits, cam, target))


def test_return_cam_must_be_a_bool() -> None:
    model = timm.create_model("topgap_resnet18", num_classes=3, k=4).eval()
    with pytest.raises(ValueError, match=r"`return_cam` must be True or False, got 'yes'"):
        model(torch.zeros(1, 3, 32, 32), return_cam="yes")

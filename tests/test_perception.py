"""Perception Visualization: the frozen classifier, a decoder that reads E(x) only, the loss and PV's formula with
known values, the grad-cam bridge, clear errors, and the checkpoint round trip.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from captum_topgap import get_method
from captum_topgap.adapters import grad_cam as grad_cam_adapters
from captum_topgap.app.cli import main
from captum_topgap.data.transforms import Batch
from captum_topgap.methods.perception import perception_maps, perception_visualization, unit_saliency
from captum_topgap.models import PerceptionDecoder
from captum_topgap.models.perception import feature_consistency
from captum_topgap.train.checkpoints import load_model, save_checkpoint
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.objectives import PerceptionObjective
from captum_topgap.train.workflows import perception_setup


def tiny_resnet(seed: int = 0) -> nn.Module:
    """The timm model ``test_resnet`` (0.4 M parameters, BatchNorm throughout), 3 classes, untrained."""
    torch.manual_seed(seed)
    return timm.create_model("test_resnet", num_classes=3).eval()


class HalfBlind(nn.Module):
    """A classifier whose layer ``features`` reads the left half of the image only: its right half changes
    nothing at ``features``, so E(x) ignores it (and so must D(E(x))).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x.clone()
        left[..., x.shape[-1] // 2:] = 0
        return self.head(self.features(left))


def linear_net(weights: list[list[float]]) -> nn.Sequential:
    """E = the identity on the image (layer ``0``), then GAP and a linear layer with the given weights: the
    class-c Grad-CAM is ReLU(Σ_k W_ck x_k / (H W)), the gradient of y_c by x_k being W_ck / (H W) everywhere.
    """
    net = nn.Sequential(nn.Identity(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, len(weights)))
    with torch.no_grad():
        net[3].weight.copy_(torch.tensor(weights))
        net[3].bias.copy_(torch.tensor([0.3] * len(weights)))
    return net.eval()


def same_weights(first: nn.Module, second: nn.Module) -> bool:
    """The same state-dict entries (parameters and buffers, BatchNorm statistics included), equal bit for bit."""
    ours, theirs = first.state_dict(), second.state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_decoder_training_leaves_the_classifier_unchanged() -> None:
    """Weights, BatchNorm statistics (and their counters), eval mode, frozen flags and predictions after the
    project's loop trained the decoder; the decoder itself did move.
    """
    decoder = PerceptionDecoder(tiny_resnet(), image_size=32)
    generator = torch.Generator().manual_seed(0)
    data = [(torch.rand(3, 32, 32, generator=generator), i % 3, None) for i in range(32)]
    images = torch.stack([image for image, _, _ in data])
    classifier = {k: v.clone() for k, v in decoder.classifier.state_dict().items()}
    decoding = {k: v.clone() for k, v in decoder.state_dict().items() if not k.startswith("classifier.")}
    with torch.no_grad():
        before = decoder.classifier(images)
    train(decoder, PerceptionObjective(), data, data, TrainConfig(epochs=1, batch_size=8, optimizer="adam", lr=1e-2,
                                                                  progress=False, diagnostic_images=0))
    assert any(k.endswith("running_mean") for k in classifier) and any(k.endswith("num_batches_tracked")
                                                                       for k in classifier)
    assert all(torch.equal(v, decoder.classifier.state_dict()[k]) for k, v in classifier.items())
    assert not decoder.classifier.training and not any(p.requires_grad for p in decoder.classifier.parameters())
    with torch.no_grad():
        assert torch.equal(decoder.classifier(images), before)
    assert any(not torch.equal(v, decoder.state_dict()[k]) for k, v in decoding.items())


def test_the_decoder_sees_nothing_but_the_encoders_output() -> None:
    """Changing what the layer does not read (the right half) keeps E(x) and the reconstruction bit for bit;
    changing what it reads (the left half) changes both: the reconstruction comes from E(x) alone.
    """
    torch.manual_seed(0)
    decoder = PerceptionDecoder(HalfBlind(), "features", image_size=16).eval()
    x = torch.rand(2, 3, 16, 16)
    right, left = x.clone(), x.clone()
    right[..., 8:] = torch.rand(2, 3, 16, 8)
    left[..., :7] = torch.rand(2, 3, 16, 7)
    assert torch.equal(decoder.encode(right), decoder.encode(x))
    assert torch.equal(decoder.reconstruct(right), decoder.reconstruct(x))
    pv = get_method("perception_visualization", decoder.classifier, decoder=decoder)
    assert torch.equal(pv.attribute_all(right, target=0)["reconstruction"],
                       pv.attribute_all(x, target=0)["reconstruction"])
    assert not torch.equal(decoder.encode(left), decoder.encode(x))
    assert not torch.allclose(decoder.reconstruct(left), decoder.reconstruct(x))


def test_feature_consistency_is_the_mean_of_per_image_relative_squared_errors() -> None:
    latent = torch.tensor([[1.0, 0.0], [2.0, 0.0]]).view(2, 2, 1, 1)
    re_encoded = torch.tensor([[2.0, 0.0], [2.0, 1.0]]).view(2, 2, 1, 1)
    # image 1: 1² / 1² = 1; image 2: 1² / 2² = 0.25; the mean 0.625 (a ratio of sums would give 0.4)
    assert feature_consistency(latent, re_encoded).item() == pytest.approx(0.625)
    assert feature_consistency(latent, latent).item() == 0.0
    assert feature_consistency(torch.zeros(1, 2, 1, 1), torch.ones(1, 2, 1, 1)).isfinite()
    with pytest.raises(ValueError, match=r"E\(x\) \(2, 2, 1, 1\) and E\(x̂\) \(2, 1, 1, 1\) differ in shape"):
        feature_consistency(latent, re_encoded[:, :1])


def test_the_objective_on_a_hand_made_encoder() -> None:
    """E(x) = 2x (a 1 × 1 convolution of weight 2): the consistency term is ‖2x̂ − 2x‖² / ‖2x‖² per image, so
    L = mean|x̂ − x| + β · mean_i ‖x̂_i − x_i‖² / ‖x_i‖².
    """
    encoder = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        encoder.weight.copy_(2 * torch.eye(3).view(3, 3, 1, 1))
    net = nn.Sequential(encoder, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    torch.manual_seed(0)
    decoder = PerceptionDecoder(net, "0", image_size=4).eval()
    x = torch.rand(2, 3, 4, 4)
    batch = Batch(x, torch.tensor([0, 1]), None, None)
    with torch.no_grad():
        assert torch.allclose(decoder.encode(x), 2 * x)
        x_hat = decoder.decode(2 * x)
        pixel = (x_hat - x).abs().mean()
        relative = ((x_hat - x).flatten(1).pow(2).sum(1) / x.flatten(1).pow(2).sum(1)).mean()
        loss, logits = PerceptionObjective(consistency=0.5)(decoder, batch)
        assert loss.item() == pytest.approx((pixel + 0.5 * relative).item(), rel=1e-5)
        assert PerceptionObjective(consistency=0.0)(decoder, batch)[0].item() == pytest.approx(pixel.item(), rel=1e-6)
        assert torch.equal(logits, net(x))


def test_unit_saliency_and_the_pv_formula_on_fixed_tensors() -> None:
    cam = torch.tensor([[[[-1.0, 2.0], [4.0, 0.0]]], [[[0.5, 0.25], [0.0, -3.0]]], [[[-1.0, -2.0], [0.0, -0.5]]],
                        [[[1.0, 2.0], [3.0, 1.0]]], [[[2.0, 2.0], [2.0, 2.0]]]])
    # min-max of ReLU(cam): an all-positive map starts at 0 too (division by the peak would give 1/3 there); a
    # constant map — all ≤ 0, or the same everywhere — is zero
    assert unit_saliency(cam).flatten(1).tolist() == [[0.0, 0.5, 1.0, 0.0], [1.0, 0.5, 0.0, 0.0], [0.0] * 4,
                                                      [0.0, 0.5, 1.0, 0.0], [0.0] * 4]
    reconstruction = torch.tensor([[[[0.2, 0.8]], [[1.0, 0.0]]]])  # one image, 2 channels, 1 × 2
    saliency = torch.tensor([[[[1.0, 0.25]]]])
    # PV = s x̂ + (1 − s) g: where s = 1 the reconstruction, where s = 0.25 a quarter of it on g
    expected = torch.tensor([[[[0.2, 0.25 * 0.8 + 0.75 * 0.5]], [[1.0, 0.75 * 0.5]]]])
    assert torch.allclose(perception_visualization(reconstruction, saliency), expected)
    assert torch.allclose(perception_visualization(reconstruction, saliency, grey=0.0),
                          torch.tensor([[[[0.2, 0.2]], [[1.0, 0.0]]]]))
    with pytest.raises(ValueError, match=r"`saliency` \(1, 1, 2, 1\) must match the reconstruction"):
        perception_visualization(reconstruction, saliency.transpose(2, 3))


def test_perception_maps_on_a_net_whose_grad_cam_is_known() -> None:
    """s_c = minmax(ReLU(Σ_k W_ck x_k)) (the 1 / (H W) of the gradient cancels), x̂ = D(x), PV = s x̂ + (1 − s) 0.5."""
    weights = [[1.0, -1.0, 0.0], [0.0, 0.0, 2.0]]
    torch.manual_seed(0)
    decoder = PerceptionDecoder(linear_net(weights), "0", image_size=4).eval()
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 1])
    maps = perception_maps(decoder, x, labels)
    w = torch.tensor(weights)[labels].view(2, 3, 1, 1)
    cam = (w * x).sum(1, keepdim=True).clamp_min(0)
    assert (cam == 0).any() and (cam > 0).any()  # class 0's map has both signs before the ReLU
    low, high = cam.flatten(1).amin(1).view(2, 1, 1, 1), cam.flatten(1).amax(1).view(2, 1, 1, 1)
    saliency = (cam - low) / (high - low)
    assert torch.allclose(maps["gradcam"], saliency, atol=1e-6)
    with torch.no_grad():
        reconstruction = decoder.decode(x)
    assert torch.allclose(maps["reconstruction"], reconstruction, atol=1e-6)
    assert torch.allclose(maps["pv"], saliency * reconstruction + (1 - saliency) * 0.5, atol=1e-6)
    registry = get_method("perception_visualization", decoder).attribute(x, target=[0, 1])
    assert torch.allclose(registry, maps["pv"], atol=1e-6)


def test_the_grad_cam_bridge_returns_the_registrys_pv_channels_last() -> None:
    model = tiny_resnet()
    decoder = PerceptionDecoder(model, image_size=32).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = get_method("perception_visualization", model, decoder=decoder).attribute(x, target=[2, 0])
    with grad_cam_adapters.PerceptionVisualization(model, [decoder.layer], decoder=decoder) as cam:
        images = cam(input_tensor=x, targets=[ClassifierOutputTarget(2), ClassifierOutputTarget(0)])
        assert images.shape == (2, 32, 32, 3)
        assert np.allclose(images, expected.permute(0, 2, 3, 1).numpy(), atol=1e-6)
        for smooth in ("aug_smooth", "eigen_smooth"):
            with pytest.raises(ValueError, match=f"`{smooth}` is not available for Perception Visualization"):
                cam(input_tensor=x, targets=None, **{smooth: True})
    with pytest.raises(ValueError, match=r"`target_layers` \['Sequential'\] are not the decoder's layer 'layer3'"):
        grad_cam_adapters.PerceptionVisualization(model, [model.layer2], decoder=decoder)


def test_bad_inputs_get_errors_that_name_the_fix() -> None:
    model = tiny_resnet()
    decoder = PerceptionDecoder(model, image_size=32)
    with pytest.raises(ValueError, match="`decoder` was built over another classifier than `model`"):
        get_method("perception_visualization", tiny_resnet(seed=1), decoder=decoder)
    with pytest.raises(ValueError, match="needs `decoder=`"):
        get_method("perception_visualization", model)
    with pytest.raises(ValueError, match=r"`layer` layer2 is not the decoder's layer 'layer3'.*--layer"):
        get_method("perception_visualization", model, "layer2", decoder=decoder)
    pv = get_method("perception_visualization", model, decoder=decoder)
    with pytest.raises(ValueError, match=r"built for 32 × 32 images \(its `image_size`\), got 48 × 48; resize"):
        pv.attribute(torch.rand(1, 3, 48, 48), target=0)
    with pytest.raises(ValueError, match=r"built for 32 × 32 images"):
        decoder.reconstruct(torch.rand(1, 3, 32, 48))
    with pytest.raises(ValueError, match=r"the decoder reads \(192, 2, 2\) feature maps at 'layer3', got \(96, 1, 1\)"):
        decoder.decode(torch.rand(1, 96, 1, 1))
    for size in (0, -8, (32,), (32, 32, 3), True, (32, "32"), "32"):
        with pytest.raises(ValueError, match=re.escape(f"`image_size` must be a positive int or (H, W), got {size!r}")):
            PerceptionDecoder(model, image_size=size)  # type: ignore[arg-type]


def test_a_float_image_size_is_refused_like_the_other_bad_sizes() -> None:
    with pytest.raises(ValueError, match=re.escape("`image_size` must be a positive int or (H, W), got 32.0")):
        PerceptionDecoder(tiny_resnet(), image_size=32.0)  # type: ignore[arg-type]


def classifier_checkpoint(path: Path, seed: int = 0) -> Path:
    """A classifier checkpoint as ``captum-topgap train`` writes it (``test_resnet``, 3 classes), untrained."""
    save_checkpoint(path, model=tiny_resnet(seed).state_dict(),
                    metadata={"model": "test_resnet", "model_kwargs": {"num_classes": 3}, "method": "baseline",
                              "size": 32})
    return path


def decoder_checkpoint(classifier: Path, path: Path, size: int = 32, layer: str | None = "layer2") -> Path:
    """A perception checkpoint as ``train --method perception`` writes it (metadata of ``perception_setup``),
    with the decoder's weights moved off their initialisation.
    """
    decoder, metadata = perception_setup(classifier, size, layer)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in decoder.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn_like(parameter))
    save_checkpoint(path, model=decoder.state_dict(), metadata={**metadata, "size": size})
    return path


def test_load_model_rebuilds_the_layer_the_size_and_the_reconstruction(tmp_path: Path) -> None:
    classifier = classifier_checkpoint(tmp_path / "cls.pt")
    decoder, _ = perception_setup(classifier, 24, "layer2")
    path = decoder_checkpoint(classifier, tmp_path / "pv.pt", size=24)
    loaded = load_model(path)
    assert isinstance(loaded, PerceptionDecoder) and not loaded.training
    assert (loaded.layer_name, loaded.image_size, loaded.latent_shape) == ("layer2", (24, 24), (48, 3, 3))
    assert (decoder.layer_name, decoder.image_size) == (loaded.layer_name, loaded.image_size)
    assert same_weights(loaded.classifier, load_model(classifier))
    saved = torch.load(path, weights_only=True)["model"]
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in saved.items())
    rebuilt = PerceptionDecoder(load_model(classifier), "layer2", image_size=24).eval()
    rebuilt.load_state_dict(saved)
    x = torch.rand(2, 3, 24, 24)
    assert torch.equal(loaded.reconstruct(x), rebuilt.reconstruct(x))


def test_train_perception_without_a_classifier_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["train", "--method", "perception", "--size", "32", "--out", str(tmp_path / "pv")]) == 2
    err = capsys.readouterr().err
    assert err == ("captum-topgap train: error: --method perception needs --classifier CKPT: the classifier trained "
                   "by captum-topgap train\n")
    assert not (tmp_path / "pv").exists()


@pytest.mark.slow
def test_cli_trains_a_decoder_that_load_model_rebuilds(tmp_path: Path) -> None:
    classifier = classifier_checkpoint(tmp_path / "cls.pt")
    assert main(["train", "--method", "perception", "--classifier", str(classifier), "--epochs", "1", "--limit", "64",
                 "--size", "48", "--batch-size", "32", "--optimizer", "adam", "--lr", "0.001",
                 "--out", str(tmp_path / "pv")]) == 0
    loaded = load_model(tmp_path / "pv" / "best.pt")
    assert isinstance(loaded, PerceptionDecoder) and (loaded.layer_name, loaded.image_size) == ("layer4", (48, 48))
    assert same_weights(loaded.classifier, load_model(classifier))
    assert loaded.reconstruct(torch.rand(1, 3, 48, 48)).shape == (1, 3, 48, 48)

"""Every target class of ``pytorch_grad_cam.utils.model_targets`` on this project's grad-cam classes: honoured
(gradient methods differentiate the target's own scalar, exactly as grad-cam's GradCAM does; gradient-free
methods explain its category) or refused with an error naming it. Plus ``eigen_smooth`` / ``aug_smooth``.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, base_cam
from pytorch_grad_cam.utils import model_targets as mt
from torch import nn

from captum_topgap.adapters.grad_cam import CAM, AugmentedGradCAM, DifferentiableGradCAM, ReciproCAM, TopGAPCAM

from .conftest import TinyNet, tiny_topgap

GRADIENT = {  # target -> honoured by differentiating it (None: refused with this message)
    "ClassifierOutputTarget": (lambda: mt.ClassifierOutputTarget(2), None),
    "ClassifierOutputSoftmaxTarget": (lambda: mt.ClassifierOutputSoftmaxTarget(2), None),
    "ClassifierOutputReST": (lambda: mt.ClassifierOutputReST(2), None),
    "BinaryClassifierOutputTarget": (lambda: mt.BinaryClassifierOutputTarget(0),  # for one-logit models
                                     r"target BinaryClassifierOutputTarget gives 3 numbers"),
    "FinerWeightedTarget": (lambda: mt.FinerWeightedTarget(2, [0, 1], 0.6), None),
    "SoftmaxOutputTarget": (lambda: mt.SoftmaxOutputTarget(), r"target SoftmaxOutputTarget gives 3 numbers"),
    "RawScoresOutputTarget": (lambda: mt.RawScoresOutputTarget(), r"target RawScoresOutputTarget gives 3 numbers"),
    "SemanticSegmentationTarget": (lambda: mt.SemanticSegmentationTarget(1, np.ones((8, 8))),
                                   r"\['SemanticSegmentationTarget'\] are for segmentation or detection"),
    "FasterRCNNBoxScoreTarget": (lambda: mt.FasterRCNNBoxScoreTarget([1], [[0, 0, 4, 4]]),
                                 r"\['FasterRCNNBoxScoreTarget'\] are for segmentation or detection"),
}


def test_the_matrix_covers_every_grad_cam_target_class() -> None:
    classes = {name for name, value in inspect.getmembers(mt, inspect.isclass) if value.__module__ == mt.__name__}
    assert classes == set(GRADIENT)


@pytest.fixture
def net() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def pictures() -> torch.Tensor:
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", sorted(GRADIENT))
def test_gradient_bridge_differentiates_each_targets_scalar_like_grad_cam(name: str, net, pictures) -> None:
    make, refusal = GRADIENT[name]
    targets = [make(), make()]
    with DifferentiableGradCAM(net, [net.features[4]]) as ours:
        if refusal is not None:
            with pytest.raises((TypeError, ValueError), match=refusal):
                ours(input_tensor=pictures, targets=targets)
            return
        maps = ours(input_tensor=pictures, targets=targets)
    with GradCAM(net, [net.features[4]]) as theirs:
        expected = theirs(input_tensor=pictures, targets=targets)
    assert maps.shape == (2, 8, 8) and np.abs(maps - expected).max() < 1e-5


def test_binary_target_on_a_one_logit_classifier(pictures) -> None:
    torch.manual_seed(0)
    binary = TinyNet(classes=1).eval()
    for category in (0, 1):
        targets = [mt.BinaryClassifierOutputTarget(category)] * 2
        with DifferentiableGradCAM(binary, [binary.features[4]]) as ours, \
                GradCAM(binary, [binary.features[4]]) as theirs:
            assert np.abs(ours(pictures, targets) - theirs(pictures, targets)).max() < 1e-5


@pytest.mark.parametrize("name", sorted(GRADIENT))
def test_cam_explains_the_category_or_refuses(name: str, net, pictures) -> None:
    make, _ = GRADIENT[name]
    targets = [make(), make()]
    with CAM(net, [net.features]) as cam:
        if name in ("ClassifierOutputTarget", "ClassifierOutputSoftmaxTarget", "ClassifierOutputReST"):
            expected = cam(input_tensor=pictures, targets=[mt.ClassifierOutputTarget(2)] * 2)
            assert np.array_equal(cam(input_tensor=pictures, targets=targets), expected)
        else:
            with pytest.raises(TypeError, match=rf"{name}"):
                cam(input_tensor=pictures, targets=targets)


def recipro_by_hand(net: TinyNet, pictures: torch.Tensor, scalar) -> np.ndarray:
    """Recipro-CAM written out: each position of ``net.features``' output alone, the rest of the network, the
    target's scalar of that copy's logits; ReLU and min-max as grad-cam scales a map.
    """
    features = net.features(pictures)
    h, w = features.shape[-2:]
    maps = np.zeros((len(pictures), h, w), dtype=np.float32)
    with torch.no_grad():
        for k in range(h * w):
            kept = torch.zeros_like(features)
            kept.view(*features.shape[:2], -1)[..., k] = features.view(*features.shape[:2], -1)[..., k]
            logits = net.fc(net.pool(kept).flatten(1))
            for i in range(len(pictures)):
                maps[i, k // w, k % w] = float(scalar(logits[i]))
    scaled = base_cam.scale_cam_image(np.maximum(maps, 0), (pictures.shape[-1], pictures.shape[-2]))
    return base_cam.scale_cam_image(scaled)  # grad-cam's aggregate over the (one) layer


@pytest.mark.parametrize("name", sorted(GRADIENT))
def test_recipro_bridge_reads_each_targets_scalar_from_every_masked_copy(name: str, net, pictures) -> None:
    make, refusal = GRADIENT[name]
    targets = [make(), make()]
    with ReciproCAM(net, [net.features]) as cam:
        if refusal is not None:
            with pytest.raises((TypeError, ValueError), match=refusal):
                cam(input_tensor=pictures, targets=targets)
            return
        maps = cam(input_tensor=pictures, targets=targets)
    expected = recipro_by_hand(net, pictures, targets[0])
    assert maps.shape == expected.shape and np.abs(maps - expected).max() < 1e-5


def test_recipro_and_augmented_bridges_tell_softmax_from_logit_targets(net, pictures) -> None:
    """The bug: both bridges gave the same map for ClassifierOutputTarget(c) and ClassifierOutputSoftmaxTarget(c)."""
    for bridge, options in ((ReciproCAM, {}), (AugmentedGradCAM, {"n_augmentations": 4, "iterations": 10})):
        with bridge(net, [net.features[4]], **options) as cam:
            logit = cam(input_tensor=pictures, targets=[mt.ClassifierOutputTarget(2)] * 2)
            softmax = cam(input_tensor=pictures, targets=[mt.ClassifierOutputSoftmaxTarget(2)] * 2)
        assert np.abs(logit - softmax).max() > 1e-2, bridge.__name__


@pytest.mark.parametrize("name", sorted(GRADIENT))
def test_augmented_bridge_differentiates_each_targets_scalar_on_every_copy(name: str, net, pictures) -> None:
    """Its base Grad-CAM differentiates the target's scalar: the bridge equals the registry's method given that
    scalar as its ``score``; whole-vector and other-task targets are refused by name.
    """
    import captum_topgap

    make, refusal = GRADIENT[name]
    targets = [make(), make()]
    options = {"n_augmentations": 4, "iterations": 10}
    with AugmentedGradCAM(net, [net.features[4]], **options) as cam:
        if refusal is not None:
            with pytest.raises((TypeError, ValueError), match=refusal):
                cam(input_tensor=pictures, targets=targets)
            return
        maps = cam(input_tensor=pictures, targets=targets)
    method = captum_topgap.get_method("augmented_gradcam", net, net.features[4], upsample=False, **options)

    def score(logits: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.as_tensor(targets[o](row)).reshape(()) for row, o in
                            zip(logits, owners.tolist(), strict=True)])

    direct = method.attribute(pictures, target=None, score=score)[:, 0].clamp_min(0).numpy()
    expected = base_cam.scale_cam_image(base_cam.scale_cam_image(direct, (8, 8)))
    assert np.abs(maps - expected).max() < 1e-5


def test_top_gap_bridge_selects_class_maps_and_refuses_vectors() -> None:
    model = tiny_topgap().eval()
    pictures = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with TopGAPCAM(model) as cam:
        by_class = cam(input_tensor=pictures, targets=[mt.ClassifierOutputTarget(1)] * 2)
        assert np.array_equal(cam(input_tensor=pictures, targets=[mt.ClassifierOutputSoftmaxTarget(1)] * 2),
                              by_class)
        with pytest.raises(ValueError, match=r"target BinaryClassifierOutputTarget gives shape \(3, 16, 16\)"):
            cam(input_tensor=pictures, targets=[mt.BinaryClassifierOutputTarget(1)] * 2)


def test_eigen_smooth_is_grad_cams_up_to_the_components_sign(net, pictures, monkeypatch) -> None:
    """grad-cam leaves the principal component's sign to LAPACK; ours orients it along the Grad-CAM map."""
    targets = [mt.ClassifierOutputTarget(1)] * 2
    with DifferentiableGradCAM(net, [net.features[4]]) as ours, GradCAM(net, [net.features[4]]) as theirs:
        smoothed, plain = ours(pictures, targets, eigen_smooth=True), ours(pictures, targets)
        as_is = theirs(pictures, targets, eigen_smooth=True)
        projection = base_cam.get_2d_projection
        monkeypatch.setattr(base_cam, "get_2d_projection", lambda activations: -projection(activations))
        flipped = theirs(pictures, targets, eigen_smooth=True)
    for image in range(2):
        assert min(np.abs(smoothed[image] - as_is[image]).max(), np.abs(smoothed[image] - flipped[image]).max()) < 1e-4
        assert np.corrcoef(smoothed[image].ravel(), plain[image].ravel())[0, 1] > 0
    with ReciproCAM(net, [net.features[4]]) as cam, \
            pytest.raises(ValueError, match=r"`eigen_smooth` is not available for 'recipro_cam'"):
        cam(pictures, targets, eigen_smooth=True)


def test_aug_smooth_is_grad_cams_test_time_augmentation(net, pictures) -> None:
    targets = [mt.ClassifierOutputTarget(1)] * 2
    with DifferentiableGradCAM(net, [net.features[4]]) as ours, GradCAM(net, [net.features[4]]) as theirs:
        assert np.abs(ours(pictures, targets, aug_smooth=True) - theirs(pictures, targets, aug_smooth=True)).max() \
            < 1e-4


def test_registry_grad_cam_classes_take_aug_and_eigen_smooth(net, pictures) -> None:
    import captum_topgap

    method = captum_topgap.get_method("gradcam", net, layer=net.features[4])
    with GradCAM(net, [net.features[4]]) as theirs:
        for option in ("eigen_smooth", "aug_smooth"):
            expected = theirs(pictures, [mt.ClassifierOutputTarget(1)] * 2, **{option: True})
            assert np.abs(method.attribute(pictures, target=1, **{option: True})[:, 0].numpy() - expected).max() \
                < 1e-4
    with pytest.raises(ValueError, match=r"'recipro_cam' does not take the option\(s\) \['aug_smooth'\]"):
        captum_topgap.get_method("recipro_cam", net).attribute(pictures, target=1, aug_smooth=True)


def test_every_target_layer_is_used_and_averaged_as_grad_cam_does(net, pictures) -> None:
    layers = [net.features[2], net.features[4]]
    targets = [mt.ClassifierOutputTarget(0), mt.ClassifierOutputTarget(2)]
    with DifferentiableGradCAM(net, layers) as ours, GradCAM(net, layers) as theirs:
        both = ours(pictures, targets)
        assert np.abs(both - theirs(pictures, targets)).max() < 1e-5
    with DifferentiableGradCAM(net, layers[1:]) as last_only:
        assert np.abs(both - last_only(pictures, targets)).max() > 1e-2


def test_target_layers_is_taken_as_every_grad_cam_class_takes_it(recwarn) -> None:
    """grad-cam's tutorial call ``Class(model=m, target_layers=[...])`` works for the classes that read the
    model's own maps: the CAM layer silently, another layer with a warning, the same maps either way.
    """
    model = tiny_topgap()
    x, targets = torch.rand(2, 3, 32, 32), [mt.ClassifierOutputTarget(1), mt.ClassifierOutputTarget(2)]
    with TopGAPCAM(model=model, target_layers=None) as cam:
        expected = cam(input_tensor=x, targets=targets)
    with TopGAPCAM(model=model, target_layers=[model.fuse]) as cam:
        assert np.array_equal(cam(input_tensor=x, targets=targets), expected)
    assert not [w for w in recwarn if "target_layers" in str(w.message)]
    with pytest.warns(UserWarning, match=r"`target_layers` is not used by 'topgap_cam': it reads the model's own"):
        other = TopGAPCAM(model=model, target_layers=[model.lateral[0]])
    with other as cam:
        assert np.array_equal(cam(input_tensor=x, targets=targets), expected)


@pytest.mark.parametrize("layer", ["layer1", "layer4", "vit"])
def test_the_registrys_gradcam_is_grad_cams_own_map(layer: str) -> None:
    """grad-cam resizes (OpenCV) and then min-max scales; the registry's map is that output to 1e-5 on a
    16 × 16 stage, a 4 × 4 stage and a ViT block (with grad-cam's reshape of its tokens).
    """
    import timm

    from captum_topgap import get_method

    torch.manual_seed(0)
    if layer == "vit":
        model = timm.create_model("vit_tiny_patch16_224", num_classes=5, img_size=64).eval()
        module = model.blocks[-1].norm1

        def reshape(tokens: torch.Tensor) -> torch.Tensor:
            grid = tokens[:, 1:].reshape(tokens.shape[0], 4, 4, tokens.shape[-1])
            return grid.permute(0, 3, 1, 2)

        options = {"reshape_transform": reshape}
    else:
        model, options = timm.create_model("resnet18", num_classes=5).eval(), {}
        module = getattr(model, layer)
    x, labels = torch.rand(2, 3, 64 if layer != "layer4" else 128, 64 if layer != "layer4" else 128), [1, 3]
    ours = get_method("gradcam", model, module, **options).attribute(x, target=labels)[:, 0].numpy()
    with GradCAM(model=model, target_layers=[module], **options) as cam:
        theirs = cam(input_tensor=x, targets=[mt.ClassifierOutputTarget(c) for c in labels])
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(ours.reshape(2, -1).max(1), 1.0, atol=1e-5)

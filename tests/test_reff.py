"""The ReFF term: its definition, its gradient (double back-propagation) and its errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import captum_topgap
from captum_topgap._state import count_hooks
from captum_topgap.methods.gradcam import grad_cam_maps
from captum_topgap.train.losses import ReFF


class Smooth(nn.Module):
    """conv-tanh-conv-tanh-GAP-FC in float64: smooth, so finite differences are meaningful."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh())
        self.block2 = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1, stride=2), nn.Tanh())
        self.fc = nn.Linear(5, 3)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block2(self.block1(x)).mean(dim=(2, 3)))


@pytest.fixture
def setup():
    model = Smooth().train()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 2])
    return model, x, y, ReFF(model, [model.block1, model.block2], weights=(1.0, 2.0))


def test_zero_inside_an_all_ones_mask(setup) -> None:
    _model, x, y, reff = setup
    assert float(reff(x, y, torch.ones(2, 1, 8, 8, dtype=torch.float64)).detach()) == 0.0


def test_soft_masks_scale_the_reff_term_linearly(setup) -> None:
    _model, x, y, reff = setup
    outside = reff(x, y, torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    half = reff(x, y, torch.full((2, 1, 8, 8), 0.5, dtype=torch.float64))
    assert float(outside) > 0 and torch.allclose(half, 0.5 * outside)


def test_definition_of_the_three_variants(setup) -> None:
    model, x, y, _ = setup
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    mask[..., 2:6, 2:6] = 1.0
    _, maps = grad_cam_maps(model, x, y, [model.block1, model.block2])
    expected = {
        "reff": sum(w * (m * (1 - mask)).flatten(1).norm(dim=1).mean() for w, m in zip((1, 2), maps, strict=True)),
        "l1": sum(w * (m - mask).abs().flatten(1).sum(1).mean() for w, m in zip((1, 2), maps, strict=True)),
        "l2": sum(w * (m - mask).pow(2).flatten(1).sum(1).mean() for w, m in zip((1, 2), maps, strict=True)),
    }
    for variant, value in expected.items():
        term = ReFF(model, [model.block1, model.block2], (1.0, 2.0), variant)(x, y, mask)
        assert torch.allclose(term, value), variant


def test_gradient_is_nonzero_and_finite_when_the_mask_excludes_the_explanation(setup) -> None:
    model, x, y, reff = setup
    reff(x, y, torch.zeros(2, 1, 8, 8, dtype=torch.float64)).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["fc.bias"] is None  # ∂y/∂A, hence Grad-CAM, does not depend on the output bias
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for n, g in grads.items() if n != "fc.bias")
    assert model.block1[0].weight.grad.abs().sum() > 0  # reached through the double back-propagation


def test_gradient_matches_finite_differences(setup) -> None:
    model, x, y, reff = setup
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    mask[..., :4, :] = 0.7
    weight = model.block1[0].weight
    (analytic,) = torch.autograd.grad(reff(x, y, mask), weight)
    for index in [(0, 0, 1, 1), (2, 1, 0, 2), (3, 2, 2, 0)]:
        original = weight.data[index].item()
        values = []
        for delta in (1e-6, -1e-6):
            weight.data[index] = original + delta
            values.append(float(reff(x, y, mask)))
        weight.data[index] = original
        numeric = (values[0] - values[1]) / 2e-6
        assert analytic[index].item() == pytest.approx(numeric, rel=1e-4, abs=1e-8)


def test_train_mode_kept_and_no_hook_left(setup) -> None:
    model, x, y, reff = setup
    reff(x, y, torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    assert model.training and count_hooks(model) == 0


def test_wrong_mask_size_and_values_are_rejected(setup) -> None:
    model, x, y, reff = setup
    with pytest.raises(ValueError, match=r"`mask` has shape \(2, 1, 4, 4\) but the images are \(2, 3, 8, 8\)"):
        reff(x, y, torch.ones(2, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"`mask` values must lie in \[0, 1\]"):
        reff(x, y, torch.full((2, 1, 8, 8), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"`variant` must be one of \['contrastive', 'l1', 'l2', 'reff'"):
        ReFF(model, [model.block1], (1.0,), variant="l3")
    with pytest.raises(ValueError, match=r"`weights` has 4 entries for 2 layers"):
        ReFF(model, [model.block1, model.block2])


def test_default_layers_are_the_resnet_stages() -> None:
    import timm

    model = timm.create_model("resnet18", num_classes=3)
    assert ReFF(model).layers == [model.layer1, model.layer2, model.layer3, model.layer4]
    with pytest.raises(ValueError, match=r"pass `layers=`"):
        ReFF(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_the_core_is_grad_cam(tiny_net, images) -> None:
    """Up to normalisation the differentiable core (registry 'differentiable_gradcam') equals
    pytorch-grad-cam's Grad-CAM (registry 'gradcam').
    """
    ours = captum_topgap.get_method("differentiable_gradcam", tiny_net, tiny_net.features, upsample=False).attribute(
        images, target=[2, 1])
    theirs = captum_topgap.get_method("gradcam", tiny_net, tiny_net.features, upsample=False).attribute(
        images, target=[2, 1])
    flat = ours.flatten(1)
    normalised = (flat - flat.min(1, keepdim=True).values) / (flat.max(1, keepdim=True).values
                                                              - flat.min(1, keepdim=True).values)
    assert torch.allclose(normalised.view_as(ours), theirs, atol=1e-5)


def test_algorithm_1_uses_real_masks_where_annotated_and_pseudo_masks_elsewhere(setup) -> None:
    from captum_topgap.data import Batch
    from captum_topgap.train.objectives import ReFFObjective

    model, x, y, reff = setup

    class Constant(nn.Module):
        def annotate(self, images):
            return torch.full((len(images), 1, 8, 8), 0.25, dtype=images.dtype)

    real = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    real[..., 4:, :] = 1.0
    batch = Batch(x, y, real, torch.tensor([True, False]))
    loss, logits = ReFFObjective(reff, weight=0.5, annotator=Constant())(model, batch)
    composed = torch.stack([real[0], torch.full((1, 8, 8), 0.25, dtype=torch.float64)])
    expected = torch.nn.functional.cross_entropy(logits, y) + 0.5 * reff(x, y, composed)
    assert torch.allclose(loss, expected)
    no_annotator, _ = ReFFObjective(reff, weight=0.5)(model, batch)
    ones_elsewhere = torch.stack([real[0], torch.ones(1, 8, 8, dtype=torch.float64)])
    assert torch.allclose(no_annotator, torch.nn.functional.cross_entropy(logits, y) + 0.5 * reff(x, y, ones_elsewhere))


def test_partially_annotated_hides_all_but_n_masks() -> None:
    from captum_topgap.data import PartiallyAnnotated, TexturedMNIST

    data = TexturedMNIST("test", size=16, limit=20)
    partial = PartiallyAnnotated(data, 5, seed=1)
    kept = [i for i in range(20) if partial[i][2] is not None]
    assert kept == partial.annotated_indices and len(kept) == 5
    assert torch.equal(partial[kept[0]][2], data[kept[0]][2])
    assert len(PartiallyAnnotated(data).annotated_indices) == 20
    with pytest.raises(ValueError, match=r"`n_annotated` must be an integer in \[0, 20\]"):
        PartiallyAnnotated(data, 21)


def test_pseudo_annotator_learns_the_masks_of_its_training_set() -> None:
    from captum_topgap.data import TexturedMNIST, collate
    from captum_topgap.models import PseudoAnnotator

    torch.manual_seed(0)
    data = [TexturedMNIST("train", p=1.0, q=0.0, size=32, limit=8)[i] for i in range(8)]
    annotator = PseudoAnnotator(size=32)
    batch = collate(data)
    before = float((annotator.annotate(batch.images) - batch.masks).abs().mean())
    history = annotator.fit(data, epochs=8, progress=False)
    after = float((annotator.annotate(batch.images) - batch.masks).abs().mean())
    assert history[-1] < history[0] and after < before
    masks = annotator.annotate(batch.images)
    assert masks.shape == (8, 1, 32, 32) and float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0
    with pytest.raises(ValueError, match=r"`size` 36 must be a multiple of 2\^depth"):
        PseudoAnnotator(size=36)


def test_cli_trains_reff_with_a_pseudo_annotator(tmp_path, monkeypatch) -> None:
    """The annotator is fitted on the 8 annotated images and draws the masks of the others during training."""
    from captum_topgap.app.cli import main
    from captum_topgap.models import PseudoAnnotator
    from captum_topgap.train.checkpoints import load_checkpoint

    calls: dict[str, list[int]] = {"fit": [], "annotate": []}
    fit, annotate = PseudoAnnotator.fit, PseudoAnnotator.annotate

    def counting_fit(self, samples, *args, **kwargs):
        calls["fit"].append(len(samples))
        return fit(self, samples, *args, **kwargs)

    def counting_annotate(self, images):
        calls["annotate"].append(len(images))
        return annotate(self, images)

    monkeypatch.setattr(PseudoAnnotator, "fit", counting_fit)
    monkeypatch.setattr(PseudoAnnotator, "annotate", counting_annotate)
    out = tmp_path / "reff"
    assert main(["train", "--model", "resnet18", "--method", "reff", "--annotated", "8", "--annotator-epochs", "1",
                 "--data", "textured-mnist", "--q", "1", "--size", "32", "--limit", "32", "--epochs", "1",
                 "--batch-size", "16", "--out", str(out)]) == 0
    meta = load_checkpoint(out / "best.pt")["metadata"]
    assert meta["method"] == "reff" and meta["annotated"] == 8 and meta["variant"] == "reff"
    assert calls["fit"] == [8] and sum(calls["annotate"]) >= 28  # 28 training images without their mask


def test_registered_core_keeps_its_graph_on_request(tiny_net, images) -> None:
    method = captum_topgap.get_method("differentiable_gradcam", tiny_net)
    kept = method.attribute(images, target=[0, 1], create_graph=True)
    assert kept.requires_grad and not method.attribute(images, target=[0, 1]).requires_grad
    (grad,) = torch.autograd.grad(kept.sum(), tiny_net.fc.weight)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_stem_reff_layers_are_the_stem_and_the_four_stages_of_any_timm_backbone() -> None:
    import timm

    from captum_topgap.train.losses import layer_names, stem_reff_layers

    resnet = timm.create_model("resnet18", num_classes=2)
    assert layer_names(resnet, stem_reff_layers(resnet)) == ["act1", "layer1", "layer2", "layer3", "layer4"]
    lite = timm.create_model("pixel_efficientnet_lite0", num_classes=2)
    assert layer_names(lite, stem_reff_layers(lite)) == ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]
    with pytest.raises(ValueError, match="no timm `feature_info` to find its stem; pass `layers=`"):
        stem_reff_layers(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))

"""The measures of Perception Visualization in place of its user study (``captum_topgap.evaluate.perception``):
each on a case whose answer is known by construction, so that a wrong implementation fails.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from captum_topgap.evaluate.perception import (
    BLUR_FACTORS,
    SALIENCY_GRIDS,
    classify,
    crops,
    decision_preservation,
    fit_small_cnn,
    gradcam_overlay,
    latent_fidelity,
    machine_observer,
    perceive,
    texture_agreement,
    texture_classifier,
    texture_renderings,
)
from captum_topgap.models.perception import PerceptionDecoder


def colour_images(dominant: torch.Tensor, seed: int) -> torch.Tensor:
    """8 × 8 images whose channel ``dominant`` is bright (0.7–0.9) and the others dim (0–0.4), with pixel noise."""
    generator = torch.Generator().manual_seed(seed)
    base = 0.4 * torch.rand(len(dominant), 3, 1, 1, generator=generator)
    base[torch.arange(len(dominant)), dominant] = 0.7 + 0.2 * torch.rand(len(dominant), 1, 1, generator=generator)
    return (base + 0.05 * torch.randn(len(dominant), 3, 8, 8, generator=generator)).clamp(0, 1)


def mean_colour_model(images: torch.Tensor) -> torch.Tensor:
    """The model whose decision is known by construction: the channel with the largest mean."""
    return images.mean(dim=(2, 3)).argmax(1)


@pytest.fixture(scope="module")
def observed() -> dict[str, object]:
    """Images of three colours, class 0 twice as frequent; the model decides by the mean colour and is right on
    every class-0 image, wrong on every other (labels independent of its decision there).
    """
    dominant = torch.tensor([0, 0, 1, 2]).repeat(50)
    images = colour_images(dominant, seed=0)
    decisions = mean_colour_model(images)
    assert torch.equal(decisions, dominant)  # the construction holds
    labels = torch.where(decisions == 0, decisions, (decisions + 1) % 3)
    return {"images": images, "decisions": decisions, "labels": labels}


def test_an_observer_of_the_input_learns_a_decision_made_by_the_input_and_predicts_the_decision_not_the_label(
        observed: dict) -> None:
    images, decisions, labels = observed["images"], observed["decisions"], observed["labels"]
    seen = machine_observer(images[:100], decisions[:100], images[100:], decisions[100:], labels[100:], 3)
    assert seen.n_errors == int((decisions[100:] != labels[100:]).sum()) == 50
    assert seen.errors == 1.0 and seen.overall == 1.0  # on the errors the label is another class: trained on labels
    # an observer would name the label and score 0 there


def test_an_observer_of_an_explanation_without_information_is_at_chance_and_is_scored_on_the_errors_only(
        observed: dict) -> None:
    """Grey images: the observer names one class for all; it is the fit part's majority (0), which the model
    never gets wrong, so on the errors it scores exactly 0 and on every image exactly the share of class 0.
    """
    decisions, labels = observed["decisions"], observed["labels"]
    grey = torch.full((200, 3, 8, 8), 0.5)
    seen = machine_observer(grey[:100], decisions[:100], grey[100:], decisions[100:], labels[100:], 3)
    assert seen.errors == 0.0 and seen.n_errors == 50
    assert seen.overall == pytest.approx(float((decisions[100:] == 0).float().mean())) == 0.5


def test_the_observer_is_deterministic_and_leaves_the_global_random_state(observed: dict) -> None:
    images, decisions = observed["images"], observed["decisions"]
    state = torch.random.get_rng_state()
    first = fit_small_cnn(images[:40], decisions[:40], 3, epochs=2, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = fit_small_cnn(images[:40], decisions[:40], 3, epochs=2, seed=5)
    other = fit_small_cnn(images[:40], decisions[:40], 3, epochs=2, seed=6)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))
    assert not torch.equal(first.head.weight, other.head.weight)
    assert not first.training and torch.equal(classify(first, images), classify(again, images))


def test_decision_preservation_counts_the_correct_and_the_wrong_apart() -> None:
    predictions = torch.tensor([0, 1, 2, 2, 1, 0])
    on_reconstruction = torch.tensor([0, 2, 2, 0, 1, 1])
    labels = torch.tensor([0, 1, 2, 0, 0, 2])  # correct: 0, 1, 2 (kept 0, 2); wrong: 3, 4, 5 (kept 4)
    kept = decision_preservation(predictions, on_reconstruction, labels)
    assert (kept.n_correct, kept.n_wrong) == (3, 3)
    assert kept.correct == pytest.approx(2 / 3) and kept.wrong == pytest.approx(1 / 3)
    assert decision_preservation(predictions, predictions, predictions).wrong is None
    with pytest.raises(ValueError, match="class indices"):
        decision_preservation(predictions, on_reconstruction[:3], labels)


def test_latent_fidelity_is_the_mean_relative_distance() -> None:
    latent = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert latent_fidelity(latent, latent) == 0.0
    assert latent_fidelity(latent, torch.tensor([[3.0, 9.0], [1.0, 0.5]])) == pytest.approx((5 / 5 + 0.5 / 1) / 2)
    with pytest.raises(ValueError, match="same shape"):
        latent_fidelity(latent, latent[:1])


class MeanColour(nn.Module):
    """A classifier that decides by the mean colour, through a 1 × 1 identity convolution E (the layer PV reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(OrderedDict(features=nn.Conv2d(3, 3, 1, bias=False), pool=nn.AdaptiveAvgPool2d(1),
                                             flat=nn.Flatten()))
        nn.init.dirac_(self.net.features.weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


@pytest.mark.parametrize("flip", [False, True], ids=["identity decoder", "colour-flipping decoder"])
def test_perceive_measures_a_hand_made_encoder_and_decoder_exactly(flip: bool) -> None:
    """E = identity, M = argmax of E's mean colour, D(z) = z (or z with RGB → BGR): M keeps its decision on
    D(E(x)) exactly where the largest channel is green (or always), ‖E(x̂) − E(x)‖ / ‖E(x)‖ = ‖flip(x) − x‖ / ‖x‖, and
    the Grad-CAM of the decision ŷ is E's channel ŷ over its maximum (∂ logit_ŷ / ∂A = 1 / HW on channel ŷ only).
    """
    decoder = PerceptionDecoder(MeanColour(), "net.features", image_size=8)
    decoder.decode = (lambda z: z.flip(1)) if flip else (lambda z: z)  # type: ignore[method-assign]
    dominant = torch.tensor([0, 1, 2, 1, 0, 2, 1])
    images = colour_images(dominant, seed=1)
    labels = torch.tensor([0, 1, 0, 0, 0, 2, 1])  # correct: 0, 1, 4, 5, 6; wrong: 2, 3
    seen = perceive(decoder, images, batch_size=3)
    assert torch.equal(seen["prediction"], dominant)
    assert torch.equal(seen["reconstruction_prediction"], 2 - dominant if flip else dominant)
    assert torch.allclose(seen["reconstruction"], images.flip(1) if flip else images)
    kept = decision_preservation(seen["prediction"], seen["reconstruction_prediction"], labels)
    assert tuple(kept) == pytest.approx((2 / 5, 5, 1 / 2, 2) if flip else (1.0, 5, 1.0, 2))
    distance = ((images.flip(1) - images).flatten(1).norm(dim=1) / images.flatten(1).norm(dim=1)) if flip else (
        torch.zeros(7))
    assert torch.allclose(seen["latent_error"], distance, atol=1e-6)
    chosen = images[torch.arange(7), dominant][:, None]  # Grad-CAM of the decision (not the label): E's channel ŷ
    low, high = chosen.amin(dim=(1, 2, 3), keepdim=True), chosen.amax(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(seen["saliency"], (chosen - low) / (high - low), atol=1e-6)  # min-max, as PV's s
    assert torch.allclose(seen["pv"], seen["saliency"] * seen["reconstruction"] + (1 - seen["saliency"]) * 0.5)
    assert torch.allclose(seen["overlay"], gradcam_overlay(images, seen["saliency"]))
    assert all(p.requires_grad is False for p in decoder.classifier.parameters())


def test_the_overlay_is_pv_with_the_input_in_place_of_the_reconstruction() -> None:
    images, saliency = torch.rand(2, 3, 4, 4), torch.rand(2, 1, 4, 4)
    assert torch.allclose(gradcam_overlay(images, saliency), saliency * images + (1 - saliency) * 0.5)
    assert torch.equal(gradcam_overlay(images, torch.ones(2, 1, 4, 4)), images)


def textures() -> list[torch.Tensor]:
    """Four textures whose look is known: red horizontal stripes, green vertical stripes, a blue checker board,
    yellow noise (32 × 32).
    """
    lines = (torch.arange(32) // 2 % 2).float()
    red = torch.stack([0.5 + 0.4 * lines[:, None].expand(32, 32), torch.full((32, 32), 0.1), torch.full((32, 32), 0.1)])
    green = torch.stack([torch.full((32, 32), 0.1), 0.5 + 0.4 * lines[None].expand(32, 32), torch.full((32, 32), 0.1)])
    checker = ((torch.arange(32)[:, None] // 4 + torch.arange(32)[None] // 4) % 2).float()
    blue = torch.stack([torch.full((32, 32), 0.1), torch.full((32, 32), 0.1), 0.4 + 0.5 * checker])
    noise = torch.rand(32, 32, generator=torch.Generator().manual_seed(0))
    yellow = torch.stack([0.6 + 0.3 * noise, 0.6 + 0.3 * noise, torch.full((32, 32), 0.05)])
    return [red, green, blue, yellow]


@pytest.fixture(scope="module")
def reader() -> nn.Module:
    return texture_classifier(textures(), 16, per_texture=24, epochs=12)


def test_the_texture_measure_reads_the_known_texture_of_explanation_like_images(reader: nn.Module) -> None:
    """Unseen renderings (another seed: other crops, blurs and saliencies) agree with the texture they were made
    of and not with the next one; grey images (no texture shown) agree with an assignment exactly as often as
    its one class occurs.
    """
    images, truth = texture_renderings(textures(), 16, per_texture=12, seed=7)
    assert texture_agreement(reader, images, truth) >= 0.95
    assert texture_agreement(reader, images, (truth + 1) % 4) <= 0.05
    said = int(classify(reader, torch.full((1, 3, 16, 16), 0.5)))
    assigned = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 0])
    grey = torch.full((10, 3, 16, 16), 0.5)
    assert texture_agreement(reader, grey, assigned) == pytest.approx(float((assigned == said).float().mean()))
    assert texture_agreement(reader, grey[:0], assigned[:0]) is None


def test_a_texture_under_a_saliency_over_grey_is_read_where_it_is_shown(reader: nn.Module) -> None:
    """The PV form: the left half shows a texture (s = 1), the right half is grey (s = 0)."""
    saliency = torch.zeros(4, 1, 16, 16)
    saliency[..., :8] = 1.0
    shown = torch.stack([texture[:, :16, :16] for texture in textures()])
    images = gradcam_overlay(shown, saliency)
    assert texture_agreement(reader, images, torch.arange(4)) == 1.0


def test_renderings_cycle_blur_and_saliency_and_mix_only_with_grey() -> None:
    """A flat texture of value v renders as v where it is unmasked and blurred (slot 0: f = 1, k = 1) and between v
    and the grey elsewhere; each texture gets every blur and grid.
    """
    flat = [torch.full((3, 20, 20), 0.9), torch.full((3, 20, 20), 0.1)]
    per = len(BLUR_FACTORS) * len(SALIENCY_GRIDS)
    images, targets = texture_renderings(flat, 12, per_texture=per)
    assert targets.tolist() == [0] * per + [1] * per
    assert torch.allclose(images[0], torch.full((3, 12, 12), 0.9)) and torch.allclose(images[per], torch.full(
        (3, 12, 12), 0.1))
    assert bool(images[:per].min() >= 0.5 - 1e-6) and bool(images[per:].max() <= 0.5 + 1e-6)
    masked = images[:per].flatten(1).min(1).values < 0.9 - 1e-4
    assert int(masked.sum()) == per - len(BLUR_FACTORS)  # every grid but k = 1 mixes in grey


def test_crops_come_from_the_texture_in_one_gather() -> None:
    texture = torch.arange(100.0).view(1, 10, 10)
    cut = crops(texture, 3, 5, torch.Generator().manual_seed(1))
    assert cut.shape == (5, 1, 3, 3)
    corners = cut[:, 0, 0, 0].long()
    for corner, patch in zip(corners.tolist(), cut, strict=True):
        top, left = divmod(corner, 10)
        assert torch.equal(patch[0], texture[0, top:top + 3, left:left + 3])
    with pytest.raises(ValueError, match="cannot give 12 × 12 crops"):
        crops(texture, 12, 1, torch.Generator())

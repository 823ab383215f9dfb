"""Top-GAP's bias-mitigation and shift table (the poster's second table): Waterbirds-style groups on Textured MNIST,
worst-group accuracy on fixed predictions, the texture-free (sketch) rendering and the corruption measure.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from captum_topgap.app.demo import Stage, Trained, measure_corruptions, measure_groups, measure_sketch
from captum_topgap.app.scenarios import OBJECT, SPURIOUS, ModelSpec, Scenario
from captum_topgap.data import TexturedMNIST
from captum_topgap.evaluate.diagnostics import BACKGROUND_GROUPS, background_groups
from captum_topgap.evaluate.shift import SEVERITIES, sketch, sketch_samples


class Fixed(nn.Module):
    """Predicts the class written in the image's first pixel (a decision known by construction)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.classes = classes
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x[:, 0, 0, 0].round().long(), self.classes).float() + 0 * self.anchor


def stage_of(data: dict, spec: Scenario = SPURIOUS, **budget: int) -> Stage:
    return Stage(spec, replace(spec.budgets["quick"], **budget), data, 8, torch.device("cpu"), False,
                 None)  # type: ignore[arg-type]


def trained(model: nn.Module) -> Trained:
    return Trained(model, [], [], 0.0, Path("m.pt"), 0)


def test_groups_say_whether_the_background_agrees_with_conflicts_with_or_is_tied_to_no_class() -> None:
    labels = torch.tensor([0, 3, 3, 9, 4])
    backgrounds = torch.tensor([0, 3, 7, 10, 10])  # 11 backgrounds: b = 10 is tied to no digit
    assert background_groups(labels, backgrounds, 11, 10).tolist() == [0, 0, 1, 2, 2]
    assert BACKGROUND_GROUPS == ("agrees", "conflicts", "neutral")
    with pytest.raises(ValueError, match="one entry per image"):
        background_groups(labels, backgrounds[:2], 11, 10)


def test_worst_group_accuracy_on_fixed_predictions_with_known_groups() -> None:
    """Six images: the background agrees for two (both right), conflicts for three (one right), is neutral for one
    (wrong) → per group 1, 1/3, 0; worst 0; average 3/6.
    """
    labels = torch.tensor([1, 2, 1, 2, 5, 6])
    predictions = torch.tensor([1, 2, 1, 7, 3, 0])
    backgrounds = torch.tensor([1, 2, 4, 5, 9, 10])
    images = torch.zeros(6, 3, 8, 8)
    images[:, 0, 0, 0] = predictions.float()
    data = {"test": [(images[i], int(labels[i]), torch.ones(1, 8, 8, dtype=torch.bool)) for i in range(6)],
            "groups": background_groups(labels, backgrounds, 11, 10), "group_names": BACKGROUND_GROUPS}
    measures = measure_groups(stage_of(data), SPURIOUS.models[0], trained(Fixed()))
    assert measures == pytest.approx({"worst_group_accuracy": 0.0, "group_average": 0.5, "group_accuracy/agrees": 1.0,
                                      "group_accuracy/conflicts": 1 / 3, "group_accuracy/neutral": 0.0})


def test_a_sketch_keeps_the_digits_mask_and_drops_its_texture_and_colour() -> None:
    data = TexturedMNIST("test", p=1.0, q=1.0, size=24, limit=4)
    samples = [data[i] for i in range(4)]
    for (image, label, mask), (drawn, same_label, same_mask) in zip(samples, sketch_samples(samples), strict=True):
        assert same_label == label and torch.equal(same_mask, mask)  # the mask is the object's, unchanged
        assert torch.equal(drawn, torch.where(mask, 0.0, 1.0).expand(3, -1, -1))  # ink on the digit, paper elsewhere
        assert image.unique().numel() > 2 and drawn.unique().numel() == 2  # the texture is gone
        assert torch.equal(drawn[0], drawn[1]) and torch.equal(drawn[1], drawn[2])  # and so is the colour
    with pytest.raises(ValueError, match=r"`masks` must be an \(N, 1, H, W\)"):
        sketch(torch.ones(2, 8, 8))
    with pytest.raises(ValueError, match="`ink` must be a grey level"):
        sketch(torch.ones(1, 1, 2, 2), ink=2.0)
    with pytest.raises(ValueError, match="sample 0 has no mask"):
        sketch_samples([(torch.rand(3, 2, 2), 0, None)])


def test_the_sketch_measure_reads_the_shape_alone_and_only_for_models_that_ask() -> None:
    """A model that answers 0 where the first pixel is ink and 1 on paper: its sketch accuracy is exact."""
    masks = torch.zeros(4, 1, 8, 8, dtype=torch.bool)
    masks[:2, :, 0, 0] = True
    data = {"test": [(torch.rand(3, 8, 8), label, masks[i]) for i, label in enumerate([0, 0, 1, 0])]}
    data["random_texture"] = [(torch.ones(3, 8, 8), label, None) for label in (1, 0)]  # the model says 1: half right
    spec = ModelSpec("m", "M", "resnet18", shifts=True)
    assert measure_sketch(stage_of(data, OBJECT), spec, trained(Fixed(2))) == {"sketch_accuracy": 0.75,
                                                                                "random_texture_accuracy": 0.5}
    assert measure_sketch(stage_of(data, OBJECT), ModelSpec("m", "M", "resnet18"), trained(Fixed(2))) == {}


def test_the_corruption_measure_is_the_mean_over_every_corruption_and_severity() -> None:
    """A model whose decision no corruption changes (it reads nothing) scores its clean accuracy everywhere."""
    class Constant(Fixed):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 2) + torch.tensor([1.0, 0.0]) + 0 * self.anchor

    data = {"test": [(torch.rand(3, 8, 8), label, None) for label in (0, 0, 0, 1, 1)]}
    spec = ModelSpec("m", "M", "resnet18", shifts=True)
    measures = measure_corruptions(stage_of(data, OBJECT, corruption_images=4), spec, trained(Constant(2)))
    assert measures["corruption_clean_accuracy"] == 0.75  # the first 4 images only
    cells = {k: v for k, v in measures.items() if k.count("/") == 2}
    assert len(cells) == len(SEVERITIES) * 5 and set(cells.values()) == {0.75}
    assert measures["corruption_accuracy"] == 0.75 and measures["corruption/jpeg"] == 0.75
    assert measure_corruptions(stage_of(data, OBJECT), ModelSpec("m", "M", "resnet18"), trained(Constant(2))) == {}


def test_the_bias_claims_compare_top_gap_with_the_baseline_in_the_spurious_setting() -> None:
    names = {m.name: m for m in SPURIOUS.models}
    assert names["topgap"].architecture == "topgap_resnet18" and names["topgap"].k == OBJECT.models[1].k
    assert "groups" in SPURIOUS.measures and {"sketch", "corruptions"} <= set(OBJECT.measures)
    claims = {c.measure: c for c in SPURIOUS.claims if c.model == "topgap"}
    assert set(claims) == {"shifted_accuracy", "worst_group_accuracy", "follows_background",
                           "in_distribution_accuracy"}
    assert all(c.reference == "baseline" for c in claims.values())
    assert "0.468 → 0.520" in claims["shifted_accuracy"].paper
    assert "topgap" not in (SPURIOUS.budgets["quick"].models or ())  # no room in the quick preset
    shifted = {c.measure: c for c in OBJECT.claims if c.measure in ("sketch_accuracy", "corruption_accuracy")}
    assert {c.model for c in shifted.values()} == {"topgap"} and len(shifted) == 2
    assert {m.name for m in OBJECT.models if m.shifts} == {"baseline", "topgap"}

"""Class discrimination, 1 − Pearson between a method's maps for the top-1 and top-2 classes: the metric on maps
whose correlation is known, and the ``compare`` column on models whose maps are known by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from captum_topgap.evaluate.compare import COLUMNS, compare, top_two_discrimination
from captum_topgap.evaluate.metrics import class_discrimination
from captum_topgap.registry import get_method

from .test_compare import Fixed

RAMP = torch.tensor([1.0, 2.0, 3.0, 4.0])


def test_identical_orthogonal_and_reversed_maps_give_0_1_2() -> None:
    a = RAMP.repeat(5, 1)
    b = torch.stack([RAMP, 3 * RAMP - 7, torch.tensor([1.0, -1.0, -1.0, 1.0]), -RAMP, 10 - 0.5 * RAMP])
    # the same; the same up to scale and offset; centred ramp (−1.5, −.5, .5, 1.5) ⟂ (1, −1, −1, 1); reversed twice
    assert class_discrimination(a, b).tolist() == [0.0, 0.0, 1.0, 2.0, 2.0]


def test_constant_maps_are_defined() -> None:
    constant, other = torch.full((1, 1, 2, 2), 0.1), RAMP.view(1, 1, 2, 2)
    assert class_discrimination(constant, torch.full((1, 1, 2, 2), 7.0)).tolist() == [0.0]  # both: the same
    assert class_discrimination(constant, other).tolist() == [1.0]  # one: uncorrelated
    assert class_discrimination(other, torch.zeros(1, 1, 2, 2)).tolist() == [1.0]


def test_it_is_one_minus_pearson_per_image_in_one_batch() -> None:
    generator = torch.Generator().manual_seed(0)
    a, noise = torch.rand(6, 1, 5, 5, generator=generator), torch.rand(6, 1, 5, 5, generator=generator)
    b = a + torch.linspace(0.1, 3.0, 6).view(6, 1, 1, 1) * noise
    expected = [1 - np.corrcoef(x.flatten().double().numpy(), y.flatten().double().numpy())[0, 1]
                for x, y in zip(a, b, strict=True)]
    measured = class_discrimination(a, b)
    assert measured.shape == (6,) and measured.tolist() == pytest.approx(expected, abs=1e-6)


def test_bad_maps_are_refused() -> None:
    with pytest.raises(ValueError, match=r"`maps_top1` \(1, 4\) and `maps_top2` \(1, 5\) must have the same shape"):
        class_discrimination(torch.rand(1, 4), torch.rand(1, 5))
    with pytest.raises(ValueError, match=r"`maps_top2` contains NaN or Inf"):
        class_discrimination(torch.rand(1, 4), torch.tensor([[0.0, float("nan"), 1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"`maps_top1` must be a tensor of maps \(N, …\), one per image, got \(4,\)"):
        class_discrimination(torch.rand(4), torch.rand(4))


def colour_cam(head: list[list[float]]) -> nn.Sequential:
    """A 1 × 1 conv (channel 0 = red, channel 1 = blue) -> ReLU -> GAP -> linear ``head``: Grad-CAM's map of
    class c is ReLU(Σ_k w_ck A_k) / hw, a known mix of the red and blue planes.
    """
    net = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(2, len(head), bias=False))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, 0] = 1.0
        net[0].weight[1, 2] = 1.0
        net[4].weight.copy_(torch.tensor(head))
    return net.eval()


def test_gradcam_of_two_classes_reading_the_same_evidence_is_not_discriminative() -> None:
    """The lecture's "cat" and "laundry basket": class 1 reads the same channels in the same proportion as class 0,
    so Grad-CAM draws the same map (up to scale) for both: 0. Classes that mix the planes 2:1 and 1:2 get
    1 − Pearson(2R + B, R + 2B).
    """
    images = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    same = colour_cam([[2.0, 1.0], [1.0, 0.5]])
    assert top_two_discrimination(same, get_method("gradcam", same), images).tolist() == pytest.approx([0.0] * 4,
                                                                                                       abs=1e-6)
    mixed = colour_cam([[2.0, 1.0], [1.0, 2.0]])
    red, blue = images[:, 0].flatten(1).double().numpy(), images[:, 2].flatten(1).double().numpy()
    expected = [1 - np.corrcoef(2 * r + b, r + 2 * b)[0, 1] for r, b in zip(red, blue, strict=True)]
    measured = top_two_discrimination(mixed, get_method("gradcam", mixed), images)
    assert measured.tolist() == pytest.approx(expected, abs=1e-5) and bool((measured > 0).all())


def test_a_map_that_ignores_the_class_scores_0_and_one_class_is_nan(tiny_net) -> None:
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    assert top_two_discrimination(tiny_net.eval(), Fixed(tiny_net), images).tolist() == [0.0, 0.0, 0.0]
    single = colour_cam([[1.0, 1.0]])
    assert all(math.isnan(value) for value in top_two_discrimination(single, get_method("saliency", single),
                                                                     images).tolist())


def test_compare_reports_the_column(tiny_net) -> None:
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    rows = compare(tiny_net.eval(), images, torch.tensor([0, 1]), torch.ones(2, 1, 8, 8, dtype=torch.bool),
                   ["saliency"], n_perturb_samples=2, steps=2, progress=False)
    expected = top_two_discrimination(tiny_net, get_method("saliency", tiny_net), images).mean()
    assert "class_discrimination" in COLUMNS
    assert rows["saliency"]["class_discrimination"] == pytest.approx(float(expected))

"""The attack entry points' inputs (issue 34): a budget above the images' range, float64 through ART, a model
and images of different dtypes. Real Foolbox and ART engines on a tiny conv model and 8 × 8 images.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from captum_topgap.evaluate.audit import robustness_audit
from captum_topgap.evaluate.robustness import (
    adversarial_examples,
    clean_accuracy,
    evaluate_robustness,
    robust_accuracy,
    robust_counts,
)

EPS = 0.03
PRE = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.5]}
ART_ATTACKS = ("square50", "apgd_ce20", "apgd_dlr20")
Entry = Callable[[nn.Module, torch.Tensor, torch.Tensor, float], Any]
#: Every attack entry point, called with (model, images, labels, eps) and otherwise its defaults.
ENTRY_POINTS: dict[str, Entry] = {
    "adversarial_examples": lambda net, x, y, eps: adversarial_examples(net, x, y, "pgd5", eps),
    "robust_accuracy": lambda net, x, y, eps: robust_accuracy(net, x, y, "pgd5", eps),
    "robust_counts": lambda net, x, y, eps: robust_counts(net, x, y, "square5", eps),
    "robustness_audit": lambda net, x, y, eps: robustness_audit(net, x, y, eps, attacks=("pgd20", "apgd_ce5"),
                                                                sweep=(), progress=False),
    "evaluate_robustness": lambda net, x, y, eps: evaluate_robustness(net, [(x, y)], ["pgd5"], eps,
                                                                      progress=False),
}


def conv_problem(n: int = 8) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Conv-ReLU-linear, 3 classes, on 3 × 8 × 8 images in [0.3, 0.7]; the labels are the model's predictions
    but for the first image, so the clean accuracy is (n − 1)/n and at ``EPS`` every attack breaks some.
    """
    generator = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3))
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    inputs = 0.3 + 0.4 * torch.rand(n, 3, 8, 8, generator=generator)
    labels = net(inputs).argmax(1)
    labels[0] = (labels[0] + 1) % 3
    return net.eval(), inputs, labels


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_budget_above_the_images_range_is_refused_with_eps_over_255(entry: str) -> None:
    net, x, y = conv_problem()
    with pytest.raises(ValueError, match=r"^`eps`=8 is larger than the images' range \[0, 1\] \(eps is in the units "
                                         r"of `bounds`, before `preprocessing`\); for 8/255 in pixel units pass "
                                         r"eps=8/255 ≈ 0\.0314\.$"):
        ENTRY_POINTS[entry](net, x, y, 8)


def test_the_budget_is_in_the_units_of_bounds_whatever_the_preprocessing() -> None:
    net, x, y = conv_problem()
    # normalised by std 0.2 the images span 5, but the engines take eps in the units of bounds, before it
    with pytest.raises(ValueError, match=r"`eps`=2 is larger than the images' range \[0, 1\]"):
        robust_accuracy(net, x, y, "pgd5", eps=2, preprocessing=PRE)
    with pytest.raises(ValueError, match=r"range \[-1, 1\] .* pass eps=8/255·2 ≈ 0\.0627\.$"):
        robust_accuracy(net, 2 * x - 1, y, "pgd5", eps=8, bounds=(-1.0, 1.0))
    scaled = robust_accuracy(net, 255 * x, y, "pgd5", eps=8, bounds=(0.0, 255.0))  # 8 levels of images in [0, 255]
    assert scaled <= clean_accuracy(net, 255 * x, y)
    assert robust_accuracy(net, x, y, "pgd5", eps=1.0) <= clean_accuracy(net, x, y)  # the whole range is a budget


def test_a_sweep_above_the_images_range_is_refused_before_any_attack() -> None:
    net, x, y = conv_problem()
    with pytest.raises(ValueError, match=r"^`sweep`=16 is larger than the images' range \[0, 1\] .* pass "
                                         r"sweep=16/255 ≈ 0\.0627\.$"):
        robustness_audit(net, x, y, attacks=("pgd20",), sweep=(16 / 255, 16), progress=False)


@pytest.mark.parametrize("attack", ART_ATTACKS)
def test_art_attacks_run_a_float64_model_and_match_float32(attack: str) -> None:
    net, x, y = conv_problem()
    double, x64 = copy.deepcopy(net).double(), x.double()
    robust32, robust64 = robust_accuracy(net, x, y, attack, EPS), robust_accuracy(double, x64, y, attack, EPS)
    assert abs(robust64 - robust32) <= 1 / len(x)
    assert robust32 < clean_accuracy(net, x, y)  # the attack breaks some images: the comparison means something
    adversarial32 = adversarial_examples(net, x, y, attack, EPS)
    adversarial64 = adversarial_examples(double, x64, y, attack, EPS)
    assert adversarial64.dtype == torch.float64
    assert (adversarial64 - x64).abs().max() <= EPS + 1e-6
    torch.testing.assert_close(adversarial64, adversarial32.double(), atol=EPS / 10, rtol=0)


def test_the_audit_runs_a_float64_model_and_matches_float32() -> None:
    net, x, y = conv_problem()
    options: dict[str, Any] = {"eps": EPS, "attacks": ("pgd20", *ART_ATTACKS), "sweep": (0.25,), "progress": False}
    audit32 = robustness_audit(net, x, y, **options)
    audit64 = robustness_audit(copy.deepcopy(net).double(), x.double(), y, **options)
    for name in ("clean", "pgd20", *ART_ATTACKS, "robust_accuracy"):
        assert abs(audit64[name] - audit32[name]) <= 1 / len(x), name
    assert audit64["sweep"] == audit32["sweep"] and audit64["verdict"] == audit32["verdict"]
    assert audit32["robust_accuracy"] < audit32["clean"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_float64_model_with_float32_images_names_both_dtypes_and_the_fix(entry: str) -> None:
    net, x, y = conv_problem()
    with pytest.raises(TypeError, match=r"^`inputs` are torch\.float32 but the model's parameters are torch\.float64; "
                                        r"pass inputs\.to\(torch\.float64\) \(or convert the model, e\.g\. "
                                        r"model\.to\(torch\.float32\)\)\.$"):
        ENTRY_POINTS[entry](copy.deepcopy(net).double(), x, y, EPS)
    with pytest.raises(TypeError, match=r"^`inputs` are torch\.float64 but the model's parameters are torch\.float32"):
        ENTRY_POINTS[entry](net, x.double(), y, EPS)

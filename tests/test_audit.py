"""The robustness audit on known-answer models: a model that masks its gradients on purpose is flagged, a
linear model is not; the verdict rules on fixed numbers; the ε sweep reaching 0 on an undefended model.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_topgap.evaluate.audit import AuditRules, fraction, robustness_audit

from .test_contract import assert_same_state, snapshot

EPS = 8 / 255
THRESHOLD = 0.13


class MeanScore(nn.Module):
    """Three logits from the image mean m: (8(m − 0.13), −8(m − 0.13), −1); class 0 iff m > 0.13."""

    def __init__(self, quantise: bool) -> None:
        super().__init__()
        self.quantise = quantise
        self.scale = nn.Parameter(torch.tensor(8.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # round() has a zero gradient everywhere: the quantising input layer masks every gradient attack
        seen = torch.round(x * 4) / 4 if self.quantise else x
        score = self.scale * (seen.flatten(1).mean(1) - THRESHOLD)
        return torch.stack([score, -score, -torch.ones_like(score)], 1)


def images(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels at 0.15 ± 0.005: the raw mean 0.15 is 0.02 above the threshold (eps = 0.031 crosses it); the
    quantised pixel is 0.25 and drops to 0 below 0.125, so lowering half of the pixels by eps flips it.
    """
    generator = torch.Generator().manual_seed(0)
    x = 0.15 + 0.01 * (torch.rand(n, 1, 4, 4, generator=generator) - 0.5)
    return x, torch.zeros(n, dtype=torch.long)


ATTACKS = ("pgd20", "pgd50", "apgd_dlr20", "square200")


def test_a_quantising_input_layer_is_flagged_as_gradient_masked() -> None:
    x, y = images()
    audit = robustness_audit(MeanScore(quantise=True), x, y, EPS, ATTACKS, sweep=(32 / 255, 128 / 255),
                             progress=False)
    assert audit["clean"] == 1.0
    assert audit["pgd20"] == 1.0 and audit["apgd_dlr20"] == 1.0  # zero gradients: nothing moves
    assert audit["square200"] == 0.0 == audit["robust_accuracy"]  # the gradient-free attack breaks every image
    assert audit["verdict"] == "gradient-masked"
    assert any(reason.startswith("square200 breaks 1.000") for reason in audit["reasons"])
    assert any(reason.startswith("at eps = 128/255 accuracy stays") for reason in audit["reasons"])
    assert audit["input_gradient_l1"] == {"survived_reference": 0.0, "broken_by_reference": None}


def test_a_linear_model_is_not_flagged_and_its_sweep_reaches_zero() -> None:
    x, y = images()
    audit = robustness_audit(MeanScore(quantise=False), x, y, EPS, ATTACKS, sweep=(16 / 255, 128 / 255),
                             progress=False)
    assert audit["clean"] == 1.0 and audit["pgd20"] == 0.0  # margin 0.02 < eps: PGD breaks every image
    assert audit["robust_accuracy"] == 0.0 and audit["sweep"] == {"16/255": 0.0, "128/255": 0.0}
    assert audit["verdict"] == "not robust"
    assert audit["reasons"] == ["robust accuracy 0.000 < 0.1 with no sign of masking"]
    # ∂CE/∂x of (8(m − .13), −8(m − .13), −1): 8·(1 − p₀ + p₁)/16 per pixel, 16 pixels
    z = 8 * (x.flatten(1).mean(1) - THRESHOLD)
    p = torch.softmax(torch.stack([z, -z, -torch.ones_like(z)], 1), 1)
    expected = (8 * (1 - p[:, 0] + p[:, 1])).median().item()
    assert audit["input_gradient_l1"]["survived_reference"] is None
    assert audit["input_gradient_l1"]["broken_by_reference"] == pytest.approx(expected, rel=1e-5)


def test_transfer_from_a_surrogate_counts_in_the_per_image_minimum() -> None:
    x, y = images()
    audit = robustness_audit(MeanScore(quantise=True), x, y, EPS, ("pgd20",), {"linear": MeanScore(False)},
                             sweep=(), progress=False)
    # PGD-20 on the linear surrogate lowers every pixel by eps: below 0.125, so the quantised model flips too
    assert audit["pgd20"] == 1.0 and audit["transfer:linear"] == 0.0 == audit["robust_accuracy"]
    assert audit["reasons"][0].startswith("transfer:linear breaks 1.000 of the images (> 0.05) that pgd20 left")


def test_the_audit_keeps_the_model_state() -> None:
    model = MeanScore(quantise=True).train()
    before = snapshot(model)
    x, y = images(4)
    robustness_audit(model, x, y, EPS, ("pgd20", "square20"), sweep=(1.0,), progress=False)
    assert_same_state(model, before)


@pytest.mark.parametrize(("cascade", "sweep", "verdict", "first_reason"), [
    # the Top-GAP poster's CIFAR-10 row: PGD-50 and Square far below PGD-20
    ({"pgd20": 0.517, "pgd50": 0.313, "square1000": 0.300}, {128 / 255: 0.0}, "gradient-masked",
     "pgd50 breaks 0.204 of the images (> 0.05) that pgd20 left standing: a stronger gradient attack"),
    ({"pgd20": 0.50, "pgd100": 0.47, "square1000": 0.46}, {128 / 255: 0.0}, "robust",
     "robust accuracy 0.460 ≥ 0.1 with no sign of masking"),
    ({"pgd20": 0.50, "pgd100": 0.47, "square1000": 0.46}, {64 / 255: 0.0, 128 / 255: 0.04}, "gradient-masked",
     "at eps = 128/255 accuracy stays 0.040 (> 0.02): an attack with an unbounded budget must reach 0"),
    ({"pgd20": 0.05, "apgd_dlr100": 0.04}, {128 / 255: 0.0}, "not robust",
     "robust accuracy 0.040 < 0.1 with no sign of masking"),
    ({"pgd20": 0.50, "apgd_ce100": 0.50, "transfer:baseline": 0.40}, {}, "gradient-masked",
     "transfer:baseline breaks 0.100 of the images (> 0.05) that apgd_ce100 and every attack before it left "
     "standing: another model's gradients find what this one's miss"),
])
def test_the_verdict_rules_on_fixed_numbers(cascade: dict[str, float], sweep: dict[float, float], verdict: str,
                                            first_reason: str) -> None:
    judged, reasons = AuditRules().judge(cascade, sweep)
    assert (judged, reasons[0]) == (verdict, first_reason)


def test_a_drop_of_exactly_the_margin_is_no_sign() -> None:
    assert AuditRules(margin=0.25).signs({"pgd20": 0.5, "pgd100": 0.25}, {}) == []
    assert AuditRules(margin=0.25).signs({"pgd20": 0.5, "pgd100": 0.24}, {}) != []


def test_the_cascade_must_start_with_the_reference() -> None:
    x, y = images(2)
    with pytest.raises(ValueError, match=r"`attacks` must start with the rules' reference attack 'pgd20'"):
        robustness_audit(MeanScore(False), x, y, attacks=("square100", "pgd20"), progress=False)


def test_fraction_names_budgets_of_255() -> None:
    assert [fraction(e / 255) for e in (8, 16, 128)] == ["8/255", "16/255", "128/255"]
    assert fraction(0.3) == "0.3"

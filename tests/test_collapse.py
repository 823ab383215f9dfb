"""ReFF's loophole on a hand-made model, the variants that close it, RRR and the collapse diagnostic."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from captum_topgap.data import collate
from captum_topgap.evaluate.diagnostics import follows_background_rate, gradcam_diagnostic, warn_if_collapsed
from captum_topgap.methods.gradcam import grad_cam_maps
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.losses import RRR, ReFF
from captum_topgap.train.objectives import ReFFObjective, make_objective


class Gamed(nn.Module):
    """A = x (one channel), logits = W · mean(A) with W = (−1, −3): class 0 wins whenever mean(A) > 0, but only
    because class 1 falls faster — the evidence for class 0 is "against class 1". The map of z_0 is −A/HW:
    negative wherever A > 0, so the published (ReLU'd) ReFF term is exactly zero.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 1, 1, bias=False)
        self.fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.features.weight.fill_(1.0)
            self.fc.weight.copy_(torch.tensor([[-1.0], [-3.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


@pytest.fixture
def gamed() -> tuple[Gamed, torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.zeros(2, 1, 4, 4)
    x[:, :, :, 2:] = 1.0      # bright background on the right
    mask = torch.zeros(2, 1, 4, 4)
    mask[..., :, :2] = 1.0    # the relevant region (dark) on the left
    return Gamed(), x, torch.tensor([0, 0]), mask


def test_the_published_term_is_zero_on_the_gamed_model_while_the_contrastive_share_is_not(gamed) -> None:
    model, x, y, mask = gamed
    assert model(x).argmax(1).tolist() == [0, 0]
    published = ReFF(model, [model.features], (1.0,), "reff")(x, y, mask)
    assert float(published.detach()) == 0.0
    (dead,) = torch.autograd.grad(published, model.fc.weight, allow_unused=True, materialize_grads=True)
    assert float(dead.abs().sum()) == 0.0  # nothing left to push the evidence anywhere
    # the centred logit z_0 − (z_0 + z_1)/2 = mean(A): its map is A/16, all of its mass on the background
    contrastive = ReFF(model, [model.features], variant="contrastive")(x, y, mask)
    assert float(contrastive.detach()) == pytest.approx(1.0)


def test_signed_and_share_variants_see_the_negative_map(gamed) -> None:
    model, x, y, mask = gamed
    signed = ReFF(model, [model.features], (1.0,), "signed")(x, y, mask)
    # M = −A/16 upsampled to itself (same size): ‖M ⊙ (1 − s)‖ per image = √8 / 16
    assert float(signed) == pytest.approx(8 ** 0.5 / 16)
    assert float(ReFF(model, [model.features], variant="share")(x, y, mask)) == pytest.approx(1.0)


def test_centred_grad_cam_is_the_map_of_the_logit_minus_the_mean_map(gamed) -> None:
    model, x, y, _ = gamed
    x = x + torch.rand_like(x)
    _, (centred,) = grad_cam_maps(model, x, y, [model.features], relu=False, score="centred")
    _, (own,) = grad_cam_maps(model, x, y, [model.features], relu=False)
    _, (other,) = grad_cam_maps(model, x, torch.ones_like(y), [model.features], relu=False)
    assert torch.allclose(centred, own - (own + other) / 2)
    with pytest.raises(ValueError, match=r"`score` must be one of \('logit', 'centred'\)"):
        grad_cam_maps(model, x, y, [model.features], score="softmax")


def test_the_diagnostic_sees_the_collapse_exactly(gamed) -> None:
    model, x, y, mask = gamed
    x = x + 0.5  # A > 0 everywhere: the map −A/16 is negative at every position
    diagnostic = gradcam_diagnostic(model, {"features": model.features}, x, y, mask)["features"]
    assert diagnostic == {"positive_fraction": 0.0, "in_mask_share": None, "positions": 16, "mask_area": 0.5}
    model.fc.weight.data.copy_(torch.tensor([[1.0], [0.0]]))  # now the map is +A/16: brighter right half
    diagnostic = gradcam_diagnostic(model, {"features": model.features}, x, y, mask)["features"]
    assert diagnostic["positive_fraction"] == 1.0
    assert diagnostic["in_mask_share"] == pytest.approx(0.5 * 16 / (0.5 * 16 + 1.5 * 16))  # 8 of 32


def test_training_warns_when_a_regularised_layer_collapses_and_logs_the_diagnostic(gamed) -> None:
    model, x, _y, mask = gamed
    samples = [(image + 0.5, 0, m.bool()) for image, m in zip(x, mask, strict=True)]
    objective = ReFFObjective(ReFF(model, [model.features], (1.0,), "reff"), weight=1.0)
    with pytest.warns(UserWarning, match=r"features: the Grad-CAM of the true class is positive at only 0\.0 %"):
        history = train(model, objective, samples, None, TrainConfig(epochs=1, batch_size=2, lr=1e-12,
                                                                    progress=False))
    assert history[0]["collapsed"] == ["features"]
    assert history[0]["diagnostic"]["features"]["positive_fraction"] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_collapsed({"features": {"positive_fraction": 0.06}}, ["features"]) == []


def test_rrr_term_against_a_hand_computed_example() -> None:
    """Linear model z = W x + b on two pixels, b = (ln 3, 0) at x = 0: p = (3/4, 1/4), and
    ∂Σ_c log p_c/∂x = Σ_c w_c − 2 Σ_c p_c w_c = (−½, 1) for w_0 = (1, 0), w_1 = (0, 2).
    """
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        net[1].bias.copy_(torch.tensor([torch.log(torch.tensor(3.0)), 0.0]))
    x = torch.zeros(1, 1, 1, 2)
    rrr = RRR(net, layers=[net[1]])
    assert float(rrr(x, torch.tensor([0]), torch.tensor([[[[1.0, 0.0]]]]))) == pytest.approx(1.0)      # (1)²
    assert float(rrr(x, torch.tensor([0]), torch.tensor([[[[0.0, 1.0]]]]))) == pytest.approx(0.25)     # (−½)²
    assert float(rrr(x, torch.tensor([0]), torch.zeros(1, 1, 1, 2))) == pytest.approx(1.25)
    with pytest.raises(ValueError, match=r"`mask` values must lie in \[0, 1\]"):
        rrr(x, torch.tensor([0]), torch.full((1, 1, 1, 2), 2.0))


def test_make_objective_builds_every_method_and_refuses_unknown_ones(tiny_net) -> None:
    from tests.conftest import tiny_topgap

    batch = collate([(torch.rand(3, 8, 8), 1, torch.ones(1, 8, 8, dtype=torch.bool))] * 2)
    reff = make_objective("reff", tiny_net_with_stages(), variant="contrastive")
    assert reff.term.variant == "contrastive" and reff.weight == 100.0 and reff.regularised == ["a", "b", "c", "d"]
    rrr = make_objective("rrr", tiny_net_with_stages())
    assert rrr.regularised == [] and rrr.weight == 1.0
    assert make_objective("topgap", tiny_topgap(), sparsity=0.5).sparsity == 0.5
    loss, logits = make_objective("baseline", tiny_net)(tiny_net, batch)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits, batch.labels))
    with pytest.raises(ValueError, match=r"`method` must be one of \('baseline', 'topgap', 'reff', 'rrr', 'abn', "
                                         r"'boxhead'\)"):
        make_objective("sgd", tiny_net)
    with pytest.raises(ValueError, match=r"`variant` must be one of \['contrastive', 'l1', 'l2', 'reff'"):
        ReFF(tiny_net, [tiny_net.features], (1.0,), variant="abn")


def tiny_net_with_stages() -> nn.Module:
    """Four 'stages' named a … d, as default_reff_layers finds them through timm's feature_info."""

    class Staged(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.c, self.d = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)
            self.feature_info = [{"num_chs": 4, "reduction": 1, "module": n} for n in "abcd"]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.d(self.c(self.b(self.a(x)))).mean(dim=(2, 3)))

    return Staged()


def test_follows_background_counts_only_images_whose_background_names_another_class() -> None:
    predictions = torch.tensor([3, 1, 2, 5, 7])
    labels = torch.tensor([0, 1, 2, 4, 7])
    backgrounds = torch.tensor([3, 4, 2, 10, 5])   # #2: background = label; #3: background 10 names no class
    assert follows_background_rate(predictions, labels, backgrounds, 11, 10) == pytest.approx(1 / 3)
    assert follows_background_rate(labels, labels, labels, 11, 10) is None

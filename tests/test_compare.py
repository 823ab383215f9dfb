"""`captum-topgap compare` and its library function, on tiny models whose answers are known by hand."""

from __future__ import annotations

import itertools
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from torch import nn

from captum_topgap import registry
from captum_topgap.app.cli import main
from captum_topgap.attribution import MethodAttribution
from captum_topgap.evaluate.compare import (
    COLUMNS,
    cascade_blocks,
    compare,
    curve_auc,
    perturbation_curve,
    randomize,
    spearman,
)

from .test_contract import assert_same_state, snapshot

WEIGHTS = torch.tensor([4.0, 3.0, 2.0, 1.0])
"""The hand-made model's logit of class 0 is Σ w_i x_i over the four pixels of a 2 × 2 image; class 1's is 0."""


class Weighted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.stack([WEIGHTS, torch.zeros(4)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def expected_auc(logits: list[float]) -> float:
    """Trapezoid over [0, 1] of the class-0 probability sigmoid(s) at equal steps."""
    p = [1 / (1 + math.exp(-s)) for s in logits]
    return sum((a + b) / 2 for a, b in itertools.pairwise(p)) / (len(p) - 1)


def test_deletion_auc_of_a_perfect_map_beats_the_inverted_one_exactly() -> None:
    model, image, label = Weighted(), torch.ones(1, 1, 2, 2), torch.tensor([0])
    perfect, inverted = WEIGHTS.view(1, 1, 2, 2), -WEIGHTS.view(1, 1, 2, 2)
    deleted = [curve_auc(perturbation_curve(model, image, heat, label, "deletion", steps=4)).item()
               for heat in (perfect, inverted)]
    # removing the pixels of weight 4, 3, 2, 1 in this order: s = 10, 6, 3, 1, 0; inverted: 10, 9, 7, 4, 0
    assert deleted[0] == pytest.approx(expected_auc([10, 6, 3, 1, 0]), abs=1e-6)
    assert deleted[1] == pytest.approx(expected_auc([10, 9, 7, 4, 0]), abs=1e-6)
    assert deleted[0] < deleted[1]


def test_insertion_starts_from_the_blurred_image_and_ends_at_the_image() -> None:
    model, label = Weighted(), torch.tensor([0])
    image = torch.rand(1, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    perfect, inverted = WEIGHTS.view(1, 1, 2, 2), -WEIGHTS.view(1, 1, 2, 2)
    curves = [perturbation_curve(model, image, heat, label, "insertion", steps=4) for heat in (perfect, inverted)]
    full = model(image).softmax(1)[0, 0]
    assert all(torch.allclose(c[0, -1], full) for c in curves) and torch.equal(curves[0][:, 0], curves[1][:, 0])
    assert curve_auc(curves[0]) > curve_auc(curves[1])


def test_the_curve_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match=r"`mode` must be 'deletion' or 'insertion', got 'erase'"):
        perturbation_curve(Weighted(), torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.tensor([0]), "erase")


def test_spearman_by_hand() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[2.0, 1.0, 4.0, 3.0], [5.0, 5.0, 5.0, 5.0], [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    # ranks (1,2,3,4) vs (2,1,4,3): 1 - 6·Σd²/(n(n²-1)) = 1 - 6·4/60 = 0.6; two constants: 1; one: 0; reversed: -1
    assert spearman(a, b).tolist() == pytest.approx([0.6, 1.0, 0.0, -1.0])


def test_the_cascade_runs_from_the_output_down_and_randomize_changes_every_parameter() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2))
    assert [name for name, _ in cascade_blocks(net)] == ["4", "1", "0"]
    before = [p.detach().clone() for p in net.parameters()]
    for _, block in cascade_blocks(net):
        randomize(block, torch.Generator().manual_seed(0))
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


class Fixed(MethodAttribution):
    """A 'method' that ignores the model: its map is a fixed ramp with the maximum at the last pixel."""

    method_name = "fixed_ramp"

    def _attribute(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h, w = inputs.shape[-2:]
        return torch.arange(h * w, dtype=inputs.dtype).view(1, 1, h, w).expand(len(inputs), -1, -1, -1).clone()


@pytest.fixture
def fixed_method(monkeypatch: pytest.MonkeyPatch) -> str:
    registry.list_methods()
    for name in ("_REGISTRY", "_KEYS", "_COMPOSITIONS"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    registry.register_method("fixed_ramp", kind="layer")(lambda model, layer=None, **kwargs: Fixed(model))
    return "fixed_ramp"


def test_compare_scores_a_weight_ignoring_method_as_known(fixed_method: str, tiny_net) -> None:
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    masks[0, 0, 7, 7] = True  # the ramp's maximum (the last pixel) lies in the first mask only
    masks[1, 0, 0, :] = True
    masks[2, 0, 6:, 6:] = True
    rows = compare(tiny_net.eval(), images, torch.tensor([0, 1, 2]), masks, [fixed_method, "saliency"],
                   n_perturb_samples=2, steps=4, progress=False)
    fixed, saliency = rows[fixed_method], rows["saliency"]
    assert set(COLUMNS) <= set(fixed)
    assert fixed["pointing_game"] == pytest.approx(2 / 3)
    # the ramp's top two pixels (τ = 0.98) box half of masks 0 and 2, its top one (τ = 0.99) all of mask 0: each
    # IoU level takes its own best threshold — 2/3 at 0.3 and 0.5, 1/3 at 0.7
    assert fixed["max_box_acc_v2"] == pytest.approx(5 / 9)
    assert fixed["randomization_similarity"] == 1.0 and fixed["flagged"]
    assert all(step["spearman"] == 1.0 for step in fixed["randomization_cascade"])
    assert [step["block"] for step in fixed["randomization_cascade"]] == [name for name, _ in cascade_blocks(tiny_net)]
    assert saliency["randomization_similarity"] < 1.0
    assert fixed["sensitivity"] == 0.0  # the map does not move when the input does
    assert fixed["seconds_per_image"] > 0


def test_compare_keeps_the_model_state(tiny_net) -> None:
    """The model-state contract holds for the whole comparison, not only inside each method: a model in train
    mode comes back in train mode with its BatchNorm statistics, flags and no hook (the randomisation
    cascade works on a copy).
    """
    model = tiny_net.train()
    before = snapshot(model)
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    compare(model, images, torch.tensor([0, 1]), torch.ones(2, 1, 8, 8, dtype=torch.bool), ["gradcam", "saliency"],
            n_perturb_samples=2, steps=2, progress=False)
    assert_same_state(model, before)
    assert model.training


def test_compare_refuses_what_it_cannot_score(tiny_net) -> None:
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"`methods` is empty"):
        compare(tiny_net, images, torch.tensor([0, 1]), torch.ones(2, 1, 8, 8, dtype=torch.bool), [])
    with pytest.raises(ValueError, match=r"`labels` and `masks` must have one entry per image \(2\), got 2 and 1"):
        compare(tiny_net, images, torch.tensor([0, 1]), torch.ones(1, 1, 8, 8, dtype=torch.bool), ["saliency"])


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.images = 0
        self.scripts = 0
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_th = tag == "th"
        self.images += tag == "img"
        self.scripts += tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_th:
            self.headers.append(data)
            self._in_th = False


@pytest.mark.slow
def test_cli_writes_the_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert main(["compare", "--model", "resnet18", "--methods", "gradcam,saliency", "--limit", "4", "--size", "32",
                 "--quick", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [row["method"] for row in results["methods"]] == ["gradcam", "saliency"]
    assert all(set(COLUMNS) <= set(row) for row in results["methods"])
    assert results["config"]["images"] == 4 and not results["config"]["trained_in_run"]
    page = _Page()
    page.feed((out / "index.html").read_text())
    assert page.headers[:len(COLUMNS) + 1] == ["method", *COLUMNS] and page.images == 3 and page.scripts == 1
    assert all((out / name).stat().st_size > 0 for name in ("pareto.png", "maps.png", "randomization.png"))
    assert "random weights" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["compare", "--model", "resnet18", "--checkpoint", "x.pt"], "not allowed with argument"),
    (["compare", "--methods", "gradkam"], "--methods: unknown method 'gradkam'"),
    (["compare", "--methods", ","], "--methods is empty"),
    (["compare", "--model", "resnet_eighteen"], "is not a timm model name"),
    (["compare", "--checkpoint", "missing.pt"], "--checkpoint: checkpoint missing.pt does not exist"),
])
def test_cli_usage_errors_are_one_line(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "o").exists()

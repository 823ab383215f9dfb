"""Robust accuracy through the real Foolbox (PGD) and ART (Square), region compositing, shift measures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_topgap._state import count_hooks
from captum_topgap.evaluate.robustness import (
    AttackSpec,
    RegionModel,
    adversarial_examples,
    clean_accuracy,
    evaluate_robustness,
    normalize,
    robust_accuracy,
    robust_counts,
)
from captum_topgap.evaluate.shift import SEVERITIES, corrupt, corruption_accuracy, group_shift

EPS = 0.05
PRE = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.5]}


def linear_problem(seed: int = 0, n: int = 32) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Two-class linear model on 3×4×4 images in [0.3, 0.7] (far from the bounds, so clipping never binds)."""
    generator = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.randn(2, 48, generator=generator) * 0.2)
        net[1].bias.zero_()
    inputs = 0.3 + 0.4 * torch.rand(n, 3, 4, 4, generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    return net, inputs, labels


def analytic_robust(net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, eps: float,
                    std: torch.Tensor | None = None) -> torch.Tensor:
    """For a linear 2-class model the worst L∞ perturbation lowers the margin by eps·‖w_y − w_other‖₁."""
    weight = net[1].weight.detach()
    if std is not None:
        weight = weight / std.repeat_interleave(16)
    logits = net(normalize(inputs, None if std is None else PRE))
    margin = logits.gather(1, labels[:, None])[:, 0] - logits.gather(1, 1 - labels[:, None])[:, 0]
    gap = (weight[labels] - weight[1 - labels]).abs().sum(1)
    return margin > eps * gap


def test_a_batch_without_correct_samples_has_nothing_to_attack() -> None:
    net, x, y = linear_problem()
    wrong = net(x).argmax(1) != y
    robust, correct = robust_counts(net, x[wrong], y[wrong], "square20", eps=EPS)
    assert not robust.any() and not correct.any() and len(robust) == int(wrong.sum())


def test_attack_names_parse() -> None:
    assert AttackSpec.parse("pgd20") == AttackSpec("pgd", 20)
    assert AttackSpec.parse("PGD50").steps == 50
    assert AttackSpec.parse("square300") == AttackSpec("square", 300)
    assert AttackSpec.parse("pgd", steps=7).name == "pgd7"
    with pytest.raises(ValueError, match="attack='cw' is not known; use 'pgd'"):
        AttackSpec.parse("cw")


@pytest.mark.parametrize("attack", ["pgd20", "square50"])
def test_eps_zero_gives_the_clean_accuracy_exactly(attack: str) -> None:
    net, x, y = linear_problem()
    assert robust_accuracy(net, x, y, attack, eps=0.0) == clean_accuracy(net, x, y)
    assert robust_accuracy(net, x, y, attack, eps=0.0, preprocessing=PRE) == clean_accuracy(net, x, y, PRE)


@pytest.mark.parametrize("preprocessing", [None, PRE])
def test_pgd_finds_the_exact_worst_case_of_a_linear_model(preprocessing: dict | None) -> None:
    net, x, y = linear_problem(n=64)
    std = None if preprocessing is None else torch.tensor(PRE["std"])
    expected = analytic_robust(net, x, y, EPS, std)
    robust, correct = robust_counts(net, x, y, "pgd20", eps=EPS, preprocessing=preprocessing)
    assert torch.equal(robust, expected)
    assert 0 < expected.sum() < correct.sum()  # the attack matters here: robust < clean


def test_square_is_bounded_by_the_optimum_and_respects_eps() -> None:
    net, x, y = linear_problem(n=64)
    adversarial = adversarial_examples(net, x, y, "square100", eps=EPS)
    assert (adversarial - x).abs().max() <= EPS + 1e-6
    robust, correct = robust_counts(net, x, y, "square100", eps=EPS)
    assert (robust | ~analytic_robust(net, x, y, EPS)).all()  # never beats the exact worst case
    assert robust.sum() < correct.sum() and (robust <= correct).all()


@pytest.mark.parametrize("attack", ["pgd20", "square100"])
def test_adversarial_images_differ_from_the_clean_ones_only_inside_the_region(attack: str) -> None:
    net, x, y = linear_problem()
    masks = torch.zeros(len(x), 1, 4, 4, dtype=torch.bool)
    masks[:, :, 1:3, 1:3] = True
    for region, allowed in (("background", ~masks), ("object", masks)):
        change = (adversarial_examples(net, x, y, attack, eps=EPS, region=region, masks=masks) - x).abs()
        assert change.masked_select(~allowed.expand_as(x)).max() == 0
        assert 0 < change.max() <= EPS + 1e-6


@pytest.mark.parametrize("attack", ["pgd20", "square100"])
def test_background_attack_with_all_object_masks_keeps_the_clean_accuracy(attack: str) -> None:
    net, x, y = linear_problem()
    everything = torch.ones(len(x), 1, 4, 4, dtype=torch.bool)
    assert robust_accuracy(net, x, y, attack, eps=0.3, region="background", masks=everything) == \
        clean_accuracy(net, x, y)
    assert robust_accuracy(net, x, y, attack, eps=0.3) < clean_accuracy(net, x, y)


def test_region_model_matches_subset_queries_to_their_own_clean_image() -> None:
    clean = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 1, 2).clone()
    allowed = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1, 1).expand(3, 1, 1, 2).clone()
    wrapper = RegionModel(nn.Flatten(), clean, allowed, radius=0.1)
    queries = clean[[2, 1]] + 0.1
    assert torch.equal(wrapper(queries), torch.tensor([[2.1, 2.1], [1.0, 1.0]]))
    with pytest.raises(RuntimeError, match="more than eps"):
        wrapper(clean[[0]] + 0.5)
    with pytest.raises(ValueError, match="within 2·eps of each other but have different masks"):
        RegionModel(nn.Flatten(), torch.zeros(2, 1, 1, 2), allowed[:2], radius=0.1)


def test_evaluate_robustness_sums_exactly_over_uneven_batches() -> None:
    net, x, y = linear_problem(n=40)
    loader = [(x[:16], y[:16]), (x[16:37], y[16:37]), (x[37:], y[37:])]
    table = evaluate_robustness(net, loader, ["pgd20"], eps=EPS, progress=False)
    robust, correct = robust_counts(net, x, y, "pgd20", eps=EPS)
    assert table == {"clean": correct.sum().item() / 40, "pgd20": robust.sum().item() / 40}


@pytest.mark.parametrize("attack", ["pgd20", "square20"])
def test_train_mode_model_is_attacked_in_eval_mode_and_restored(attack: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    net[0].weight.requires_grad_(False)
    net.train()
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 0, 1, 0, 1])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    first = robust_counts(net, x, y, attack, eps=EPS)
    assert net.training and net[3].training and not net[0].weight.requires_grad and net[1].weight.requires_grad
    assert count_hooks(net) == 0 and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    second = robust_counts(net.eval(), x, y, attack, eps=EPS)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_attack_errors_name_the_argument_and_the_fix() -> None:
    net, x, y = linear_problem()
    with pytest.raises(ValueError, match=r"outside bounds=\(0.0, 1.0\).*preprocessing=dict\(mean=..., std=...\)"):
        robust_accuracy(net, (x - 0.5) / 0.1, y)
    with pytest.raises(ValueError, match=r"class indices of shape \(32,\), got \(32, 2\); .* labels.argmax\(1\)"):
        robust_accuracy(net, x, nn.functional.one_hot(y, 2))
    with pytest.raises(ValueError, match="labels must be integer"):
        robust_accuracy(net, x, y.float())
    with pytest.raises(ValueError, match="region='background' needs masks="):
        robust_accuracy(net, x, y, region="background")
    with pytest.raises(ValueError, match=r"masks must have shape \(N, 1, H, W\) = \(32, 1, 4, 4\)"):
        robust_accuracy(net, x, y, region="object", masks=torch.ones(32, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="region='sky' is not known"):
        robust_accuracy(net, x, y, region="sky")


def test_corruptions_follow_their_formulas_and_grow_with_severity() -> None:
    x = torch.rand(4, 3, 32, 32) * 0.5 + 0.25
    for severity, c in enumerate(SEVERITIES["contrast"], start=1):
        shifted = corrupt(x, "contrast", severity)
        assert torch.allclose(shifted.std(dim=(1, 2, 3)), c * x.std(dim=(1, 2, 3)), atol=1e-5)
    noise = [(corrupt(x, "gaussian_noise", s, seed=3) - x).std().item() for s in range(1, 6)]
    assert noise == sorted(noise) and abs(noise[-1] - 0.10) < 0.005
    blur = [(corrupt(x, "gaussian_blur", s) - x).abs().mean().item() for s in range(1, 6)]
    assert blur == sorted(blur) and blur[0] > 0
    assert torch.allclose(corrupt(x, "brightness", 2), x + 0.1)
    jpeg = [(corrupt(x, "jpeg", s) - x).abs().mean().item() for s in range(1, 6)]
    assert jpeg[-1] > jpeg[0] > 0
    with pytest.raises(ValueError, match="corruption 'fog' is not known"):
        corrupt(x, "fog", 1)
    with pytest.raises(ValueError, match="severity must be 1 … 5, got 6"):
        corrupt(x, "jpeg", 6)


def test_corruption_accuracy_counts_exactly() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.tensor([1.0, 0.0]))  # always class 0, whatever the corruption
    loader = [(torch.rand(3, 3, 2, 2), torch.tensor([0, 0, 1])), (torch.rand(1, 3, 2, 2), torch.tensor([1]))]
    table = corruption_accuracy(net, loader, ["gaussian_noise", "jpeg"], [1, 5], progress=False)
    assert table == {"clean": 0.5, "gaussian_noise": {"1": 0.5, "5": 0.5, "mean": 0.5},
                     "jpeg": {"1": 0.5, "5": 0.5, "mean": 0.5}}
    with torch.no_grad():  # now class 1 iff the mean brightness exceeds 0.5: the corruption must be applied
        net[1].weight.copy_(torch.stack([torch.zeros(12), torch.full((12,), 1 / 12)]))
        net[1].bias.copy_(torch.tensor([0.0, -0.5]))
    grey = [(torch.full((4, 3, 2, 2), 0.45), torch.ones(4, dtype=torch.long))]
    table = corruption_accuracy(net, grey, ["brightness"], [1, 5], progress=False)
    assert table == {"clean": 0.0, "brightness": {"1": 0.0, "5": 1.0, "mean": 0.5}}  # +0.05 ties, +0.3 crosses


def test_group_shift_is_the_group_accuracy_of_the_models_predictions() -> None:
    from captum_topgap.data import SpuriousBackgrounds, group_accuracy

    data = SpuriousBackgrounds("test", size=16, limit=64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    scores = group_shift(net, data, batch_size=10, progress=False)
    with torch.no_grad():
        predictions = torch.stack([net(data[i][0][None]).argmax(1)[0] for i in range(len(data))])
    labels = torch.tensor([data[i][1] for i in range(len(data))])
    assert scores == group_accuracy(predictions, labels, data.groups)  # per group, not per label
    assert len([k for k in scores if k.startswith("group_")]) == 4
    with pytest.raises(ValueError, match=r"data must have \.groups"):
        group_shift(net, [(torch.rand(3, 16, 16), 0, None)])


def test_square_pays_one_forward_per_iteration_and_finds_what_arts_own_loop_finds() -> None:
    """ART's Square queries the current images twice more per iteration; the memory answers those repeats
    with the model's own outputs (a linear model: exactly), so the attack is the same and 3 × cheaper.
    """
    import numpy as np
    from art.attacks.evasion import SquareAttack

    from captum_topgap.adapters.art import RecentQueries, _run

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).eval()
    x, y = torch.rand(5, 3, 6, 6), torch.tensor([0, 1, 2, 3, 0])
    counted = RecentQueries(net)

    def attack(model: nn.Module) -> torch.Tensor:
        return _run(lambda clf: SquareAttack(clf, norm=np.inf, eps=0.05, max_iter=30, p_init=0.5, batch_size=5,
                                             verbose=False), model, x, y, (0.0, 1.0), None, 7)

    assert torch.equal(attack(counted), attack(net))
    assert counted.rows <= 5 * (30 + 3)  # ≤ one row per image and iteration (+ start), not three
    assert counted.forwards <= 30 + 4

"""The GPU path: what runs on CUDA gives what it gives on the CPU (issue 35, item 4).

Every test here is marked ``cuda`` and skipped where no CUDA device is seen; ``scripts/device-check.sh`` runs
them (``pytest -m cuda``) on a GPU machine. Each test computes the same thing on the CPU and on CUDA, from the
same weights, inputs and seeds, in full fp32 (TF32 off), and compares with the tolerance named beside it
(docs/gpu.md gives the reasons):

1. every registered method's map — both maps divided by the CPU map's peak |value| per image — within
   ``MAP_ATOL``. The randomised methods are compared by value too, not by shape alone: their draws come from
   the CPU's torch or numpy generators (RISE, Augmented Grad-CAM, LIME, Kernel SHAP, Shapley value
   sampling, GradientSHAP's baselines and interpolation points, RandomCAM), which :func:`seeded` resets
   before each run; GradientSHAP's on-device noise is zero at its default ``stdevs=0``;
2. one SGD step of every training objective: the loss within ``LOSS_RTOL``, each tensor's update (weights
   and batch-norm buffers) within ``STEP_RTOL`` of the CPU update's norm;
3. the audit's attacks: robust accuracy within one image (1/N) of the CPU's;
4. one tiny demo scenario: every claim's values within ``DEMO_ATOL``, or one image of the split they count.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from captum._utils.models.linear_model import SkLearnLinearRegression
from torch import nn

import captum_topgap
from captum_topgap.app.demo import run_demo
from captum_topgap.data import collate
from captum_topgap.data.transforms import Batch
from captum_topgap.evaluate.audit import robustness_audit
from captum_topgap.evaluate.robustness import robust_accuracy
from captum_topgap.models import ExpansionNet, PerceptionDecoder
from captum_topgap.train.losses import VARIANTS
from captum_topgap.train.objectives import METHODS, ExpansionObjective, Objective, PerceptionObjective, make_objective

from .conftest import FAST, TinyNet, tiny_abn, tiny_topgap
from .test_collapse import tiny_net_with_stages
from .test_contract import model_for
from .test_demo import TINY
from .test_robustness import linear_problem

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA not available (run scripts/device-check.sh on a GPU machine)")]

CUDA = torch.device("cuda")

MAP_ATOL = 1e-3
"""Maps scaled by the CPU map's peak |value| (so into [0, 1], or [-1, 1] for signed maps): fp32 sums in another
order differ by ~1e-6 of the peak; 1e-3 still fails a map that moved, flipped or lost a region."""
LOSS_RTOL = 1e-4
"""Relative tolerance of one loss: a handful of fp32 reductions apart."""
STEP_RTOL = 1e-3
"""‖Δ_cuda − Δ_cpu‖ ≤ STEP_RTOL · ‖Δ_cpu‖ + STEP_ATOL per tensor: ReFF's update goes through a second-order
gradient (Grad-CAM inside the loss), where fp32 rounding grows more than in one forward."""
STEP_ATOL = 1e-7
DEMO_ATOL = 0.05
"""Claims' values of two short trainings: IoU, ERF shares and accuracies drift apart by a few hundredths."""


@pytest.fixture(autouse=True)
def full_fp32() -> Iterator[None]:
    """TF32 off for convolutions and matrix products: the CPU computes in fp32, so CUDA must too."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def seeded(seed: int = 0) -> None:
    """The same draws on both runs: torch's (CPU and CUDA), numpy's and Python's generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def constructor_options(name: str) -> dict[str, object]:
    """LIME fits least squares here: its default Lasso (α = 0.01) zeroes every coefficient on the tiny net's
    logits (≈ 0.1 apart), which would leave two all-zero maps to compare.
    """
    return {"interpretable_model": SkLearnLinearRegression()} if name == "lime" else {}


def attribute_on(device: torch.device, name: str, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The method's maps of ``images`` for classes 0 and 2, with the model and images on ``device``."""
    model = copy.deepcopy(model).to(device)
    seeded()
    method = captum_topgap.get_method(name, model, **constructor_options(name))
    maps = method.attribute(images.to(device), target=[0, 2], **FAST.get(name, {}))
    assert maps.device.type == device.type, f"{name} returned its maps on {maps.device}, not {device}"
    return maps.detach()


@pytest.mark.parametrize("name", captum_topgap.list_methods())
def test_every_method_gives_the_cpu_maps_on_cuda(name: str, tiny_net: TinyNet, images: torch.Tensor) -> None:
    model = model_for(name, tiny_net)
    cpu = attribute_on(torch.device("cpu"), name, model, images)
    cuda = attribute_on(CUDA, name, model, images).cpu()
    assert cuda.shape == cpu.shape and cuda.dtype == cpu.dtype
    assert torch.isfinite(cuda).all()
    peak = cpu.abs().flatten(1).amax(1).view(-1, *[1] * (cpu.dim() - 1))
    peak = torch.where(peak > 0, peak, 1.0)  # an all-zero CPU map: CUDA's must be zero within MAP_ATOL
    torch.testing.assert_close(cuda / peak, cpu / peak, rtol=0.0, atol=MAP_ATOL, msg=lambda text: f"{name}: {text}")


OBJECTIVES = [(method, variant) for method in METHODS
              for variant in (sorted(VARIANTS) if method == "reff" else [None])] + [("expansion", None),
                                                                                    ("perception", None)]
"""Every training method of make_objective (each ReFF variant apart) and the two decoders' objectives."""


def objective_model(method: str, tiny_net: TinyNet) -> nn.Module:
    """A tiny model the method trains, dropout off (its masks come from each device's own generator)."""
    if method == "topgap":
        model = tiny_topgap()
    elif method == "expansion":
        model = ExpansionNet(tiny_net, stages=["features.2", "features"])
    elif method == "perception":
        model = PerceptionDecoder(tiny_net, image_size=8)
    elif method == "abn":
        model = tiny_abn()
    elif method == "baseline":
        model = tiny_net
    else:  # ReFF, RRR and what joins METHODS later: four stages a … d that the default layers find
        torch.manual_seed(0)
        model = tiny_net_with_stages()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model.train()


def training_batch() -> Batch:
    """Four 8-px images of classes 0 and 1, each annotated with its left half as the relevant region."""
    generator = torch.Generator().manual_seed(2)
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[..., :4] = True
    return collate([(torch.rand(3, 8, 8, generator=generator), i % 2, mask) for i in range(4)])


def objective_for(method: str, variant: str | None, model: nn.Module) -> Objective:
    """λ = 1 for the explanation terms, so that a wrong CUDA gradient of the term shows in the update."""
    if method == "expansion":
        return ExpansionObjective()
    if method == "perception":
        return PerceptionObjective()
    return make_objective(method, model, variant=variant, weight=1.0)


def one_step(device: torch.device, method: str, variant: str | None,
             model: nn.Module) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss of one SGD step (lr 0.01) on ``device`` and the change of every state tensor, on the CPU."""
    model = copy.deepcopy(model).to(device)
    before = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    batch = Batch(*(part.to(device) for part in training_batch()))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    seeded()
    loss, _ = objective_for(method, variant, model)(model, batch)
    loss.backward()
    optimizer.step()
    after = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    return loss.item(), {key: after[key] - before[key] for key in before}


@pytest.mark.parametrize(("method", "variant"), OBJECTIVES, ids=[f"{m}-{v}" if v else m for m, v in OBJECTIVES])
def test_one_training_step_of_every_objective_matches_the_cpu_step(method: str, variant: str | None,
                                                                    tiny_net: TinyNet) -> None:
    model = objective_model(method, tiny_net)
    cpu_loss, cpu_update = one_step(torch.device("cpu"), method, variant, model)
    cuda_loss, cuda_update = one_step(CUDA, method, variant, model)
    assert cuda_loss == pytest.approx(cpu_loss, rel=LOSS_RTOL)
    assert sum(float(delta.float().norm()) for delta in cpu_update.values()) > 0, "the step changed nothing"
    for key, expected in cpu_update.items():
        if not expected.is_floating_point():  # num_batches_tracked
            assert torch.equal(cuda_update[key], expected), key
            continue
        error = float((cuda_update[key] - expected).norm())
        assert error <= STEP_RTOL * float(expected.norm()) + STEP_ATOL, f"{key}: update off by {error:.3g}"


AUDIT_ATTACKS = ("pgd20", "apgd_ce20", "square100")
EPS = 0.05


@pytest.mark.parametrize("attack", AUDIT_ATTACKS)
def test_every_attack_of_the_audit_gives_the_cpu_robust_accuracy(attack: str) -> None:
    """A linear model on 16 images at ε = 0.05: the attacks break some images and leave others."""
    net, x, y = linear_problem(n=16)
    cpu = robust_accuracy(net, x, y, attack, eps=EPS)
    cuda = robust_accuracy(copy.deepcopy(net).to(CUDA), x.to(CUDA), y.to(CUDA), attack, eps=EPS)
    assert 0 < cpu < robust_accuracy(net, x, y, attack, eps=0.0)  # the attack matters here
    assert abs(cuda - cpu) <= 1 / len(x) + 1e-9


def test_the_audit_of_eight_images_gives_the_cpu_accuracies() -> None:
    """The linear model on 8 images, labelled by its own predictions, audited at ε = 0.03 with the three attacks
    (3 of 8 images break) and one sweep budget that breaks them all.
    """
    net, x, _ = linear_problem(n=8)
    y = net(x).argmax(1)
    options = {"eps": 0.03, "attacks": AUDIT_ATTACKS, "sweep": (0.1,), "progress": False}
    cpu = robustness_audit(net, x, y, **options)
    cuda = robustness_audit(copy.deepcopy(net).to(CUDA), x.to(CUDA), y.to(CUDA), **options)
    assert 0 < cpu["robust_accuracy"] < cpu["clean"]  # the attacks matter here
    for key in ("clean", *AUDIT_ATTACKS, "robust_accuracy"):
        assert abs(cuda[key] - cpu[key]) <= 1 / len(x) + 1e-9, key
    assert cuda["sweep"].keys() == cpu["sweep"].keys()
    for budget, value in cpu["sweep"].items():
        assert abs(cuda["sweep"][budget] - value) <= 1 / len(x) + 1e-9, budget


OBJECT = replace(TINY, scenarios=("object",))
"""The tests' tiny demo, its object scenario alone."""


def claim_tolerance(measure: str) -> float:
    """DEMO_ATOL, or one image of the split a measure counts (an image that flips moves it by 1/n)."""
    budget = TINY.budgets["object"]
    counted = {"accuracy": budget.test_images, "pgd20_background": budget.attack_images}
    return max(DEMO_ATOL, 1 / counted[measure]) + 1e-9 if measure in counted else DEMO_ATOL


def test_the_object_scenario_gives_the_cpu_claims_on_cuda(tmp_path: Path) -> None:
    cpu = run_demo(tmp_path / "cpu", config=OBJECT, progress=False, device="cpu")
    cuda = run_demo(tmp_path / "cuda", config=OBJECT, progress=False, device=str(CUDA))
    assert [c["claim"] for c in cuda["claims"]] == [c["claim"] for c in cpu["claims"]] != []
    for ours, theirs in zip(cuda["claims"], cpu["claims"], strict=True):
        tolerance = claim_tolerance(theirs["measure"])
        for side in ("values", "reference_values"):
            if theirs[side] is None:
                assert ours[side] is None
                continue
            assert ours[side] == pytest.approx(theirs[side], abs=tolerance), f"{theirs['claim']}: {side}"

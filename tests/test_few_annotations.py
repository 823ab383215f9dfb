"""The few-annotations scenario (the ReFF supplementary's Table 2): its models, the shared pseudo-annotator of each
(n, seed), the annotator's own measure and the claims judged on fixed numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from captum_topgap.app.demo import Annotation, Stage, Trained, annotation, evaluate_claims, measure_annotator
from captum_topgap.app.scenarios import FEW_ANNOTATIONS, few_annotation_models, scenario
from captum_topgap.evaluate.metrics import soft_mask_iou


def test_every_method_of_table_2_is_trained_at_every_n_with_algorithm_1() -> None:
    models = {m.name: m for m in few_annotation_models((1, None))}
    assert list(models) == ["reff_n1", "l1_n1", "l2_n1", "abn_n1", "contrastive_n1",
                            "reff_all", "l1_all", "l2_all", "abn_all", "contrastive_all"]
    assert {(m.method, m.variant) for m in models.values()} == {
        ("reff", "reff"), ("reff", "l1"), ("reff", "l2"), ("abn", None), ("reff", "contrastive")}
    assert models["abn_n1"].architecture == "abn_resnet18" and models["abn_n1"].annotated == 1
    assert models["reff_all"].annotated is None
    spec = scenario("few-annotations")
    assert not spec.default and spec.data.train == (0.0, 1.0) and spec.data.test == (1.0, 1.0)
    quick = set(spec.budgets["quick"].models or ())
    assert quick == {f"{method}_{n}" for method in ("reff", "l1", "l2", "abn", "contrastive") for n in ("n10", "all")}
    assert spec.budgets["default"].models is None and len(spec.models) == 15


def samples(count: int, size: int = 8) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(1, size, size)
    mask[:, : size // 2] = 1.0
    return [(torch.rand(3, size, size, generator=generator), i % 2, mask) for i in range(count)]


def test_one_annotator_per_n_and_seed_is_fitted_and_shared_by_every_model() -> None:
    data = {"train": samples(6, size=32)}
    first = annotation(data, 2, seed=0, size=32, steps=1, progress=False)
    assert annotation(data, 2, seed=0, size=32, steps=1, progress=False) is first  # the same pseudo-annotations
    other_seed = annotation(data, 2, seed=1, size=32, steps=1, progress=False)
    assert other_seed is not first and other_seed.annotator is not first.annotator
    kept = [i for i in range(6) if first.data[i][2] is not None]
    assert first.n == 2 and len(kept) == 2 and first.annotator is not None and first.seconds > 0
    everything = annotation(data, 6, seed=0, size=32, steps=1, progress=False)
    assert everything.annotator is None  # nothing hidden: no annotator to fit
    with pytest.raises(ValueError, match=r"`n_annotated`=0 leaves the pseudo-annotator no image"):
        annotation(data, 0, seed=0, size=32, steps=1, progress=False)


class TrueMasks:
    """An annotator that draws the true mask (the upper half) for every image, or its complement."""

    def __init__(self, inverted: bool = False) -> None:
        self.inverted = inverted

    def annotate(self, images: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(len(images), 1, *images.shape[-2:])
        mask[:, :, : images.shape[-2] // 2] = 1.0
        return 1 - mask if self.inverted else mask


def stage_of(val: list) -> Stage:
    return Stage(FEW_ANNOTATIONS, FEW_ANNOTATIONS.budgets["quick"], {"val": val}, 8, torch.device("cpu"), False,
                 None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("inverted", "iou"), [(False, 1.0), (True, 0.0)])
def test_the_annotator_measure_is_the_iou_of_its_masks_on_the_validation_split(inverted: bool, iou: float) -> None:
    spec = few_annotation_models((3,))[0]
    annotated = Annotation(3, [], TrueMasks(inverted), 1.5)  # type: ignore[arg-type]
    trained = Trained(torch.nn.Identity(), [], [], 0.0, Path("m.pt"), 0, annotated)
    measures = measure_annotator(stage_of(samples(4)), spec, trained)
    assert measures == {"annotator_iou": iou, "annotator_seconds": 1.5, "annotated": 3.0}
    every = Trained(torch.nn.Identity(), [], [], 0.0, Path("m.pt"), 0, None)
    assert measure_annotator(stage_of(samples(4)), spec, every) == {}


def test_soft_masks_are_taken_at_an_absolute_threshold_not_normalised() -> None:
    faint = torch.full((1, 1, 2, 2), 0.3)  # per-image normalisation would make this all ones
    mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    assert soft_mask_iou(faint, mask).tolist() == [0.0]
    assert soft_mask_iou(faint, mask, threshold=0.25).tolist() == [1.0]


def rows(values: dict[str, list[float]], measure: str = "shifted_accuracy") -> list[dict]:
    return [{"name": name, "scenario": "few-annotations", "seed": seed, "measures": {measure: value}}
            for name, per_seed in values.items() for seed, value in enumerate(per_seed)]


def test_the_claims_are_judged_by_their_fixed_criteria_and_untrained_models_are_left_out() -> None:
    claims = [c for c in FEW_ANNOTATIONS.claims if c.measure == "shifted_accuracy"]
    held = evaluate_claims(rows({"reff_n10": [0.55, 0.57, 0.56], "reff_all": [0.46, 0.47, 0.45],
                                 "l2_n10": [0.45, 0.44, 0.46], "abn_all": [0.53, 0.50, 0.55]}), claims)
    assert [row["held"] for row in held] == [True, True, True]
    failed = evaluate_claims(rows({"reff_n10": [0.40, 0.41, 0.39], "reff_all": [0.46, 0.47, 0.45],
                                   "l2_n10": [0.45, 0.44, 0.46], "abn_all": [0.43, 0.42, 0.44]}), claims)
    assert [row["held"] for row in failed] == [False, False, False]
    quick = evaluate_claims(rows({"reff_n10": [0.5], "reff_all": [0.5]}), claims)
    assert [row["model"] for row in quick] == ["reff_n10"]  # the L2 and ABN claims: their models were not trained

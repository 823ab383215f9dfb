"""pytorch-grad-cam's own test suite, re-run over this project's grad-cam classes (``GradCamBridge`` and its
specialisations ``TopGAPCAM``, ``CAM``, ``ReciproCAM``, ``DifferentiableGradCAM``, ``ExpansionCAM``,
``AugmentedGradCAM``).

The matrix is jacobgil/pytorch-grad-cam's:

- ``tests/test_run_all_models.py``: every class × (torchvision resnet18 with target layers
  ``[layer4[-1], layer4[-2]]``, vgg11 with ``[features[-1]]``) × (batch, width, height) in
  {(2, 32, 32), (1, 32, 40)} × ``target_category`` in {None, 100} × ``aug_smooth`` × ``eigen_smooth``;
  it asserts the output's shape (N, H, W). Upstream loads pretrained weights and ``examples/both.png``
  and runs ``aug_smooth=False`` only; here the weights are ``None``, the image is a seeded random one
  (preprocessed and repeated the same way) and ``aug_smooth=True`` is added (marked slow: six forwards each).
  The methods that read the model's own maps get the model of that backbone they need — a Top-GAP
  network (``topgap_resnet18``, Top-GAP over vgg11) or an ``ExpansionNet`` over it — and no target layers;
  ``literal call`` cases pass them grad-cam's model and layers unchanged, which they must refuse.
- ``tests/test_one_channel.py``: a resnet18 whose ``conv1`` takes one channel, 16 images, ``layer4``,
  ``targets=None``, used as a context manager.
- ``tests/test_context_release.py``: leaving the ``with`` block releases everything (here: no hook is left
  on the model); ``tests/test_svd_no_side_effect.py``: the caller's data is untouched (here: the input).

Every case either passes grad-cam's assertions — shape (N, H, W), plus float32, finite, in [0, 1] — or is a
documented refusal: a ValueError / TypeError whose message names what is refused (``eigen_smooth`` for
methods without it, ``target_layers`` for methods that read the model's maps, a model that is not GAP+FC
for CAM and Expansion CAM). ``DifferentiableGradCAM`` computes grad-cam's ``GradCAM``, so it must also
equal it (this is what would catch an option silently ignored; with ``eigen_smooth``, up to the sign this
project documents for the principal component, see :class:`OrientedGradCAM`). Anything else is a failure,
kept in ``KNOWN_FAILURES`` as a strict xfail pinned to today's error (none today).

vgg11's classifier is frozen (``requires_grad=False``): the maps need gradients of the activations only, and a
CPU is spared 470 MB of weight gradients per backward. The tests run on one intra-op thread.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import timm
import torch
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import preprocess_image, scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from torch import nn

import captum_topgap
from captum_topgap.adapters import grad_cam
from captum_topgap.models import ExpansionNet, topgap

pytestmark = pytest.mark.filterwarnings("ignore:.*(1 × 1 output|zero everywhere).*:UserWarning")
"""grad-cam's 32 × 32 images leave resnet18's layer4 and vgg11's last pooling at 1 × 1: constant maps, warned."""

CLASSES = ("TopGAPCAM", "CAM", "ReciproCAM", "DifferentiableGradCAM", "ExpansionCAM", "AugmentedGradCAM")
MODEL_MAPS = ("TopGAPCAM", "ExpansionCAM")
"""Classes that read the model's own maps: no target layers, a model of their own kind."""
OPTIONS: dict[str, dict[str, int]] = {"AugmentedGradCAM": {"n_augmentations": 3, "iterations": 4},
                                      "ExpansionCAM": {"hole_area": 16}}
"""Small options so that the matrix runs in seconds on a CPU."""
GRAD_CAM_LAYERS = {"resnet18": ("layer4", -1, -2), "resnet18_1ch": ("layer4",), "vgg11": ("features", -1)}
"""grad-cam's target layers per model: a container and the indices of the layers in it (none: the container)."""
STAGES = {"resnet18": ["relu", "layer1", "layer2", "layer3", "layer4"],
          "resnet18_1ch": ["relu", "layer1", "layer2", "layer3", "layer4"],
          "vgg11": ["features.1", "features.4", "features.9", "features.14", "features.20"]}
"""Encoder stages of the torchvision models (no timm ``feature_info``) for ``ExpansionNet``."""


@dataclass(frozen=True)
class Case:
    """One run of one class: ``build`` says what model it gets (``plain``: the torchvision model, ``topgap`` /
    ``expansion``: the model of that kind over the backbone), ``layers`` whether grad-cam's target layers
    are passed.
    """

    suite: str
    cam: str
    backbone: str
    build: str
    layers: bool
    batch: int
    width: int
    height: int
    target: int | None
    aug_smooth: bool
    eigen_smooth: bool

    @property
    def id(self) -> str:
        model = self.backbone if self.build == "plain" else f"{self.build}({self.backbone})"
        return (f"{self.suite}:{self.cam}:{model}{':layers' if self.layers else ''}:{self.batch}x{self.width}x"
                f"{self.height}:target={self.target}:aug={int(self.aug_smooth)}:eigen={int(self.eigen_smooth)}")

    @property
    def method(self) -> str:
        """The registered method behind the class."""
        return getattr(grad_cam, self.cam).method


def own_model(cam: str) -> str:
    """What a class is given in grad-cam's matrix: the Top-GAP network or the ExpansionNet of the backbone for
    the classes that read the model's maps, the backbone itself for the others.
    """
    return {"TopGAPCAM": "topgap", "ExpansionCAM": "expansion"}.get(cam, "plain")


def matrix() -> list[Case]:
    """Every case: grad-cam's run-all-models matrix, the literal calls, the one-channel model."""
    cases = [Case("run_all_models", cam, backbone, own_model(cam), cam not in MODEL_MAPS, batch, width, height,
                  target, aug, eigen)
             for cam in CLASSES for backbone in ("resnet18", "vgg11")
             for batch, width, height in ((2, 32, 32), (1, 32, 40)) for target in (None, 100)
             for aug in (False, True) for eigen in (True, False)]
    cases += [Case("literal_call", cam, backbone, "plain", layers, 2, 32, 32, None, False, False)
              for cam in MODEL_MAPS for backbone in ("resnet18", "vgg11") for layers in (True, False)]
    cases += [Case("one_channel", cam, "resnet18_1ch", own_model(cam), cam not in MODEL_MAPS, 16, 32, 32, None,
                   False, False) for cam in CLASSES]
    return cases


def refusal(case: Case) -> tuple[type[Exception], str] | None:
    """The documented refusal of a case (error type and message pattern), in the order the checks run."""
    if case.build == "plain" and case.cam == "ExpansionCAM":
        return ValueError, r"'expansion_cam' needs `expansion=`: an ExpansionNet built over this model"
    if case.build == "expansion" and case.backbone == "vgg11":
        return ValueError, r"the last stage 'features.20' has 512 channels but the classifier reads 4096"
    if case.eigen_smooth and case.cam != "DifferentiableGradCAM":
        return ValueError, rf"`eigen_smooth` is not available for '{case.method}'"
    if case.build == "plain" and case.cam == "TopGAPCAM":
        return TypeError, r"Top-GAP CAM needs a Top-GAP model .*'topgap_resnet18'"
    if case.cam == "CAM" and case.backbone != "resnet18_1ch":
        layer = "BasicBlock" if case.backbone == "resnet18" else "MaxPool2d"
        return ValueError, rf"CAM needs a GAP\+FC network: .* for layer {layer}\."
    return None


KNOWN_FAILURES: dict[Case, tuple[type[BaseException], str]] = {}
"""Cases that fail because of this project: the error raised today and why."""


def outcome(case: Case) -> str:
    if case in KNOWN_FAILURES:
        return "xfail"
    return "refused" if refusal(case) is not None else "pass"


def param(case: Case) -> object:
    marks: list[pytest.MarkDecorator] = [pytest.mark.slow] if case.aug_smooth else []
    if case in KNOWN_FAILURES:
        error, reason = KNOWN_FAILURES[case]
        marks.append(pytest.mark.xfail(strict=True, raises=error, reason=reason))
    return pytest.param(case, id=case.id, marks=marks)


def backbone(name: str) -> nn.Module:
    """A fresh torchvision model with seeded random weights (``resnet18_1ch``: conv1 takes one channel)."""
    torch.manual_seed(0)
    if name == "vgg11":  # frozen classifier: no 470 MB of weight gradients per backward (the maps do not use them)
        model = torchvision.models.vgg11(weights=None).eval()
        model.classifier.requires_grad_(False)
        return model
    model = torchvision.models.resnet18(weights=None)
    if name == "resnet18_1ch":
        model.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
    return model.eval()


@functools.cache
def network(build: str, name: str) -> nn.Module:
    """The case's model, built once (an ExpansionNet freezes its localiser, so it gets its own copy)."""
    if build == "plain":
        return backbone(name)
    if build == "topgap":
        torch.manual_seed(0)
        channels = 1 if name == "resnet18_1ch" else 3
        if name == "vgg11":
            return topgap("vgg11", num_classes=1000, k=4).eval()
        return timm.create_model("topgap_resnet18", num_classes=1000, k=4, in_chans=channels).eval()
    return ExpansionNet(localizer(name), stages=STAGES[name]).eval()


@functools.cache
def localizer(name: str) -> nn.Module:
    return backbone(name)


def target_layers(model: nn.Module, name: str) -> list[nn.Module]:
    container, *indices = GRAD_CAM_LAYERS[name]
    layers = getattr(model, container)
    return [layers[i] for i in indices] if indices else [layers]


def images(case: Case) -> torch.Tensor:
    """grad-cam's input: one image preprocessed (ImageNet normalisation) and repeated ``batch`` times; the
    one-channel test feeds the raw grey values.
    """
    rng = np.random.default_rng(0)
    if case.backbone == "resnet18_1ch":
        grey = np.float32(rng.integers(0, 256, (case.height, case.width)))
        return torch.from_numpy(grey)[None, None].repeat(case.batch, 1, 1, 1)
    image = np.float32(rng.random((case.height, case.width, 3)))
    return preprocess_image(image).repeat(case.batch, 1, 1, 1)


class OrientedGradCAM(GradCAM):
    """grad-cam's ``GradCAM`` with the eigen-smoothing sign this project documents: a principal component's
    sign is arbitrary (grad-cam leaves it to LAPACK); ``principal_projection`` orients it to correlate
    positively with the channel sum. Without ``eigen_smooth`` it is grad-cam's ``GradCAM`` unchanged.
    """

    def get_cam_image(self, input_tensor: torch.Tensor, target_layer: nn.Module, targets: list,
                      activations: np.ndarray, grads: np.ndarray, eigen_smooth: bool = False) -> np.ndarray:
        if not eigen_smooth:
            return super().get_cam_image(input_tensor, target_layer, targets, activations, grads)
        weights = self.get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        weighted = weights[:, :, None, None] * activations
        projection = get_2d_projection(weighted)
        channel_sum = weighted.sum(axis=1)
        agreement = (projection * (channel_sum - channel_sum.mean(axis=(1, 2), keepdims=True))).sum(axis=(1, 2))
        return np.float32(projection * np.where(agreement < 0, -1.0, 1.0)[:, None, None])


def hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


def run(cam_class: type, model: nn.Module, layers: list[nn.Module] | None, x: torch.Tensor,
        targets: list[ClassifierOutputTarget] | None, aug_smooth: bool = False, eigen_smooth: bool = False,
        **options: int) -> np.ndarray:
    """grad-cam's usage: ``with Class(model=..., target_layers=...) as cam: cam(input_tensor=..., targets=...)``."""
    maps = None
    with cam_class(model=model, target_layers=layers, **options) as cam:
        maps = cam(input_tensor=x, targets=targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
    assert maps is not None, "an IndexError was swallowed by grad-cam's BaseCAM.__exit__"
    return maps


def run_case(case: Case, x: torch.Tensor) -> np.ndarray:
    """One case, model construction included (some refusals happen there)."""
    model = network(case.build, case.backbone)
    targets = None if case.target is None else [ClassifierOutputTarget(case.target) for _ in range(case.batch)]
    layers = target_layers(model, case.backbone) if case.layers else None
    maps = run(getattr(grad_cam, case.cam), model, layers, x, targets, case.aug_smooth, case.eigen_smooth,
               **OPTIONS.get(case.cam, {}))
    return maps


CASES = matrix()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a loaded 2-core machine these small models run 3 to 5 times faster so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("case", [param(case) for case in CASES])
def test_all_cam_models_can_run(case: Case) -> None:
    refused = refusal(case)
    if refused is not None:
        error, message = refused
        with pytest.raises(error, match=message):
            run_case(case, images(case))
        return
    model = network(case.build, case.backbone)
    hooks_before = hooks(model)
    x = images(case)
    before = x.clone()
    maps = run_case(case, x)
    assert maps.shape[0] == x.shape[0] and maps.shape[1:] == x.shape[2:]  # grad-cam's assertions
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert hooks(model) == hooks_before, "hooks left on the model after the with block"
    assert torch.equal(x, before) and x.grad is None and not x.requires_grad, "the input tensor was changed"
    if case.cam == "DifferentiableGradCAM":
        targets = None if case.target is None else [ClassifierOutputTarget(case.target)] * case.batch
        expected = run(OrientedGradCAM, model, target_layers(model, case.backbone), x, targets, case.aug_smooth,
                       case.eigen_smooth)
        assert np.allclose(maps, expected, atol=1e-4), f"differs from grad-cam's GradCAM by " \
                                                       f"{np.abs(maps - expected).max():.3g}"


def test_the_suite_counts() -> None:
    """The note's numbers: cases, passes, clear refusals, strict xfails (failures because of this project)."""
    assert len(CASES) == len(set(CASES)) == 206
    assert Counter(case.suite for case in CASES) == {"run_all_models": 192, "literal_call": 8, "one_channel": 6}
    assert Counter(outcome(case) for case in CASES) == {"pass": 94, "refused": 112}
    assert Counter(case.cam for case in CASES if outcome(case) == "pass") == {
        "TopGAPCAM": 17, "CAM": 1, "ReciproCAM": 17, "DifferentiableGradCAM": 33, "ExpansionCAM": 9,
        "AugmentedGradCAM": 17}


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return backbone("resnet18")


@pytest.mark.parametrize("eigen_smooth", [False, True])
@pytest.mark.parametrize("target", [None, 100])
def test_multi_layer_differentiable_gradcam_equals_grad_cams_gradcam(resnet: nn.Module, target: int | None,
                                                                     eigen_smooth: bool) -> None:
    """Both average the per-layer maps the grad-cam way (ReLU, min-max, resize, mean, min-max); with
    ``eigen_smooth`` grad-cam's projection is oriented as this project documents (:class:`OrientedGradCAM`).
    """
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    targets = None if target is None else [ClassifierOutputTarget(target)] * 2
    layers = [resnet.layer3, resnet.layer4]
    ours = run(grad_cam.DifferentiableGradCAM, resnet, layers, x, targets, eigen_smooth=eigen_smooth)
    reference = OrientedGradCAM if eigen_smooth else GradCAM
    theirs = run(reference, resnet, layers, x, targets, eigen_smooth=eigen_smooth)
    assert ours.shape == (2, 64, 64) and theirs.max() > 0
    assert np.allclose(ours, theirs, atol=1e-4), f"max difference {np.abs(ours - theirs).max():.3g}"
    if eigen_smooth:  # honoured, not silently ignored
        assert not np.allclose(ours, run(grad_cam.DifferentiableGradCAM, resnet, layers, x, targets), atol=1e-2)


def test_single_layer_differentiable_gradcam_equals_grad_cams_gradcam(resnet: nn.Module) -> None:
    """One layer too goes through aggregate_multi_layers' final min-max (a 4 × 4 map resized keeps max < 1)."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = run(grad_cam.DifferentiableGradCAM, resnet, [resnet.layer3], x, None)
    theirs = run(GradCAM, resnet, [resnet.layer3], x, None)
    assert np.allclose(ours, theirs, atol=1e-4), f"max difference {np.abs(ours - theirs).max():.3g}"


def test_multi_layer_recipro_cam_is_grad_cams_aggregate_of_the_single_layer_maps(resnet: nn.Module) -> None:
    x = torch.rand(2, 3, 80, 64, generator=torch.Generator().manual_seed(1))
    layers = [resnet.layer3, resnet.layer4]
    ours = run(grad_cam.ReciproCAM, resnet, layers, x, [ClassifierOutputTarget(100), ClassifierOutputTarget(3)])
    classes = torch.tensor([100, 3])

    def logit(logits: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:  # ClassifierOutputTarget's scalar
        return logits[torch.arange(len(logits)), classes[owners]]

    per_layer = [captum_topgap.get_method("recipro_cam", resnet, layer, upsample=False).attribute(
        x, target=None, score=logit)[:, 0].clamp_min(0).numpy() for layer in layers]
    expected = scale_cam_image(np.mean([scale_cam_image(maps, (64, 80)) for maps in per_layer], axis=0))
    assert ours.shape == (2, 80, 64) and expected.max() > 0
    assert np.allclose(ours, expected, atol=1e-5)
    assert not np.allclose(ours, scale_cam_image(per_layer[1], (64, 80)), atol=1e-2)  # both layers count

"""Bad inputs, counted: each case is one (entry point, argument, bad value) and must end in a clear error — the
promised exception, with a message that names the argument (in backticks, as the validators of
``captum_topgap._checks`` write it) and the allowed range or the fix — or in the correct result. Never in a
silent one: a bad value that is accepted and changes the result is the worst outcome.

The last test keeps the number of cases part of the suite.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from re import escape as re_escape
from typing import Any

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, SemanticSegmentationTarget
from torch import nn

import captum_topgap
from captum_topgap import registry
from captum_topgap.adapters.grad_cam import GradCamBridge
from captum_topgap.data import PartiallyAnnotated, SpuriousBackgrounds, batches, collate, make_dataset, resize_pair
from captum_topgap.evaluate import metrics
from captum_topgap.evaluate.robustness import AttackSpec, clean_accuracy, evaluate_robustness, robust_accuracy
from captum_topgap.evaluate.shift import corrupt
from captum_topgap.methods.erf import erf_at
from captum_topgap.models import TopGAPNet
from captum_topgap.pooling import TopKPool, top_k_pool
from captum_topgap.registry import canonical_name, method_spec, register_method
from captum_topgap.train.checkpoints import build_model, load_checkpoint, load_model
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.losses import RRR, ReFF, topgap_loss
from captum_topgap.train.objectives import (
    CrossEntropy,
    ExpansionObjective,
    ExplanationObjective,
    TopGAPObjective,
    make_objective,
)

from .conftest import TinyFeatures, TinyNet, tiny_topgap

NAN, INF = float("nan"), float("inf")
X = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
"""Two 8 × 8 images for the tiny models (3 classes)."""
LABELS = torch.tensor([0, 1])
HEAT = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
MASK = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)) > 0.5
XS, YS = torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(4)), torch.tensor([0, 1, 0, 1])
"""Images in [0, 1] and labels for the attacks on a linear model."""
SAMPLES = [(X[i % 2], i % 2, None) for i in range(4)]


@dataclass
class Env:
    """What a case runs against: the tiny CNN of conftest, a tiny Top-GAP network, and a folder for files."""

    net: TinyNet
    factory: pytest.TempPathFactory

    @cached_property
    def topgap(self) -> TopGAPNet:
        return tiny_topgap()

    @cached_property
    def folder(self) -> Path:
        return self.factory.mktemp("bad_inputs")

    def model(self, which: str) -> nn.Module:
        """``net``, ``topgap``, ``conv`` (no linear classifier) or ``mlp`` (no spatial layer)."""
        if which == "topgap":
            return self.topgap
        if which == "conv":
            return nn.Sequential(nn.Conv2d(3, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        if which == "mlp":
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
        return self.net


Call = Callable[[Env], object]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The tensors here are tiny: one thread beats two that wait for each other on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def env(tiny_net: TinyNet, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Env:
    """The models, with the registry copied so that a case that registers a name leaks nothing."""
    captum_topgap.list_methods()
    for name in ("_REGISTRY", "_KEYS", "_COMPOSITIONS"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    return Env(tiny_net, tmp_path_factory)


def clear(kind: str, call: Call, error: type[Exception], message: str) -> pytest.ParameterSet:
    """A case that is handled: ``call`` raises ``error`` with a message matching ``message``."""
    return pytest.param(call, error, message, id=kind)


def build(name: str, model: str = "net", **options: Any) -> Call:
    """``get_method(name, model, **options)``: a constructor option checked on construction."""
    return lambda env: captum_topgap.get_method(name, env.model(model), **options)


def explain(name: str, inputs: object = X, target: object = 0, model: str = "net",
            options: dict[str, Any] | None = None, **call_options: Any) -> Call:
    """``get_method(name, model, **options).attribute(inputs, target, **call_options)``: an input, a target, a
    per-call option, or a constructor option whose check may wait for the first call.
    """
    def call(env: Env) -> object:
        method = captum_topgap.get_method(name, env.model(model), **(options or {}))
        return method.attribute(inputs, target=target, **call_options)

    return call


def layer_of(name: str, **options: Any) -> Call:
    """``get_method(name, net, **options).layer``: the layer traced with the probe of ``input_size``."""
    return lambda env: captum_topgap.get_method(name, env.net, **options).layer


# --- attribute(inputs): the image batch, over methods that reach it by different paths --------------------------

CHEAP = {
    "gradcam": ("net", {}),
    "layer_gradcam": ("net", {}),
    "saliency": ("net", {}),
    "integrated_gradients": ("net", {}),
    "recipro_cam": ("net", {}),
    "augmented_gradcam": ("net", {"n_augmentations": 2, "iterations": 2}),
    "cam": ("net", {}),
    "erf": ("net", {}),
    "rise": ("net", {"n_masks": 4, "cell_size": 4}),
    "topgap_cam": ("topgap", {}),
    "smooth:saliency": ("net", {"nt_samples": 2}),
}
"""Methods with their cheapest options and the model they explain."""

NOT_TENSOR = r"`inputs` must be a torch\.Tensor of shape \(N, C, H, W\), got {}; convert it with torch\.as_tensor"
NOT_FLOAT = r"`inputs` must be a floating-point tensor, got torch\.{}; convert with x\.float\(\)"
OTHER_DTYPE = r"`inputs` are torch\.{} but the model's parameters are torch\.float32; pass inputs\.to\(torch\.float32\)"
NOT_4D = r"`inputs` must have 4 dimensions \(N, C, H, W\), got shape {}"
NOT_FINITE = r"`inputs` contains NaN or Inf values; clean the batch \(e\.g\. torch\.nan_to_num\) first"
BAD_INPUTS = [
    ("3-D", X[0], ValueError, NOT_4D.format(r"\(3, 8, 8\)\. Add a batch dimension with x\.unsqueeze\(0\)")),
    ("5-D", X[None], ValueError, NOT_4D.format(r"\(1, 2, 3, 8, 8\)")),
    ("0-D", torch.tensor(0.5), ValueError, NOT_4D.format(r"\(\)")),
    ("empty-batch", X[:0], ValueError, r"`inputs` is an empty batch \(N = 0\); pass at least one image"),
    ("NaN", X.index_fill(3, torch.tensor([0]), NAN), ValueError, NOT_FINITE),
    ("Inf", X.index_fill(2, torch.tensor([1]), INF), ValueError, NOT_FINITE),
    ("int64", (X * 255).long(), TypeError, NOT_FLOAT.format("int64")),
    ("uint8", (X * 255).to(torch.uint8), TypeError, NOT_FLOAT.format("uint8")),
    ("bool", X > 0.5, TypeError, NOT_FLOAT.format("bool")),
    ("1-channel", X[:, :1], ValueError,
     r"`inputs` has 1 channels but the model expects 3; pass images of shape \(N, 3, H, W\)"),
    ("4-channels", torch.cat([X, X[:, :1]], 1), ValueError, r"`inputs` has 4 channels but the model expects 3"),
    ("list", X.tolist(), TypeError, NOT_TENSOR.format("list")),
    ("numpy", X.numpy(), TypeError, NOT_TENSOR.format("ndarray")),
    ("tuple-of-2", (X, X), ValueError,
     r"`inputs` must be one image tensor or a 1-tuple of it \(Captum's convention\), got a tuple of 2"),
    ("float64", X.double(), TypeError, OTHER_DTYPE.format("float64")),
    ("float16", X.half(), TypeError, OTHER_DTYPE.format("float16")),
]
"""(label, inputs, error, message): each is refused by the contract's check before any computation."""


def input_case(name: str, label: str, inputs: object, error: type[Exception], message: str) -> pytest.ParameterSet:
    model, options = CHEAP[name]
    return clear(f"{name}.attribute:inputs={label}", explain(name, inputs, model=model, options=options), error,
                 message)


EMPTY_IMAGE = r"`inputs` .*empty"
INPUT_CASES = [
    *[input_case(name, *bad) for name in CHEAP for bad in BAD_INPUTS],
    *[clear(f"{name}.attribute:inputs=0x8-image", explain(name, torch.rand(1, 3, 0, 8)), ValueError, EMPTY_IMAGE)
      for name in ("saliency", "gradcam", "layer_gradcam")],
]

# --- attribute(target) --------------------------------------------------------------------------------------------

TARGET_TYPE = r"`target` must be an int, a list of ints or a tensor of class indices, got {}"
OUT_OF_RANGE = r"`target` {} out of range for a model with 3 outputs; use indices in \[0, 2\]"
ONE_PER_IMAGE = r"`target` must be one index or one per image \(2\), got shape {}"
BAD_TARGETS = [
    ("3", 3, ValueError, OUT_OF_RANGE.format(r"\[3, 3\]")),
    ("-1", -1, ValueError, OUT_OF_RANGE.format(r"\[-1, -1\]")),
    ("[0,5]", [0, 5], ValueError, OUT_OF_RANGE.format(r"\[5\]")),
    ("3-for-2-images", [0, 1, 2], ValueError, ONE_PER_IMAGE.format(r"\(3,\)")),
    ("float-tensor", torch.tensor([0.0, 1.0]), TypeError,
     r"`target` must hold integer class indices, got dtype torch\.float32; pass labels\.long\(\)"),
    ("bool-tensor", torch.tensor([True, False]), TypeError,
     r"`target` must hold integer class indices, got dtype torch\.bool; pass labels\.long\(\)"),
    ("2-D-tensor", torch.zeros(2, 2, dtype=torch.long), ValueError, ONE_PER_IMAGE.format(r"\(2, 2\)")),
    ("str", "1", TypeError, TARGET_TYPE.format("'1'; pass the class index 1 as an int")),
    ("float", 1.5, TypeError, TARGET_TYPE.format(r"1\.5")),
    ("bool", True, TypeError, TARGET_TYPE.format("True")),
    ("list-with-str", [0, "1"], TypeError, TARGET_TYPE.format(r"\[0, '1'\]")),
]
TARGET_METHODS = ("gradcam", "integrated_gradients", "recipro_cam", "rise", "topgap_cam", "smooth:saliency")


def target_call(name: str, target: object) -> Call:
    model, options = CHEAP[name]
    return explain(name, target=target, model=model, options=options)


TARGET_CASES = [
    *[clear(f"{name}.attribute:target={label}", target_call(name, target), error, message)
      for name in TARGET_METHODS for label, target, error, message in BAD_TARGETS],
    *[clear(f"{name}.attribute:target=[]", target_call(name, []), ValueError, ONE_PER_IMAGE.format(r"\(0,\)"))
      for name in TARGET_METHODS],
]

# --- options of each method: constructor and per call -------------------------------------------------------------

AUG = {"n_augmentations": 2, "iterations": 2}
AUGMENTED = [  # (option, bad value, message): check_augmented_options on construction
    ("n_augmentations", 0, r"`n_augmentations` must be an integer ≥ 1, got 0\."),
    ("n_augmentations", -1, r"`n_augmentations` must be an integer ≥ 1, got -1\."),
    ("n_augmentations", "ten", r"`n_augmentations` must be an integer ≥ 1, got 'ten' \(str\)"),
    ("n_augmentations", 2.5, r"`n_augmentations` must be an integer ≥ 1, got 2\.5 \(float\)"),
    ("n_augmentations", True, r"`n_augmentations` must be an integer ≥ 1, got True \(bool\)"),
    ("n_augmentations", None, r"`n_augmentations` must be an integer ≥ 1, got None \(NoneType\)"),
    ("batch_size", 0, r"`batch_size` must be an integer ≥ 1, got 0\."),
    ("batch_size", "64", r"`batch_size` must be an integer ≥ 1, got '64' \(str\)"),
    ("batch_size", True, r"`batch_size` must be an integer ≥ 1, got True \(bool\)"),
    ("iterations", 0, r"`iterations` must be an integer ≥ 1, got 0\."),
    ("iterations", 1.5, r"`iterations` must be an integer ≥ 1, got 1\.5 \(float\)"),
    ("seed", -1, r"`seed` must be an integer ≥ 0, got -1\."),
    ("seed", 1.5, r"`seed` must be an integer ≥ 0, got 1\.5 \(float\)"),
    ("max_rotation", -0.1, r"`max_rotation` must be a finite number ≥ 0, got -0\.1\."),
    ("max_rotation", NAN, r"`max_rotation` must be a finite number ≥ 0, got nan\."),
    ("max_shift", -1.0, r"`max_shift` must be a finite number ≥ 0, got -1\.0\."),
    ("lambda_tv", -0.1, r"`lambda_tv` must be a finite number ≥ 0, got -0\.1\."),
    ("lambda_tv", NAN, r"`lambda_tv` must be a finite number ≥ 0, got nan\."),
    ("lambda_tv", INF, r"`lambda_tv` must be a finite number ≥ 0, got inf\."),
    ("lambda_tv", "x", r"`lambda_tv` must be a finite number ≥ 0, got 'x'\."),
    ("mu", -1.0, r"`mu` must be a finite number ≥ 0, got -1\.0\."),
    ("mu", NAN, r"`mu` must be a finite number ≥ 0, got nan\."),
    ("tol", -1.0, r"`tol` must be a finite number ≥ 0, got -1\.0\."),
    ("lr", 0, r"`lr` must be a finite number > 0, got 0\."),
    ("lr", -1e-3, r"`lr` must be a finite number > 0, got -0\.001\."),
    ("lr", NAN, r"`lr` must be a finite number > 0, got nan\."),
    ("solver", "sgd", r"`solver` must be one of \['adam', 'primal_dual'\], got 'sgd'\."),
    ("solver", None, r"`solver` must be one of \['adam', 'primal_dual'\], got None\."),
    ("registration", "mean", r"`registration` must be one of \['avg', 'max', 'sr'\], got 'mean'\."),
    ("base", "saliency", r"`base` must be a registered layer CAM such as 'gradcam' or 'gradcam\+\+', got 'saliency'"),
    ("base", "guided_gradcam", r"`base` must be a registered layer CAM .*got 'guided_gradcam'"),
    ("base", "augmented_gradcam", r"`base` must be a registered layer CAM .*got 'augmented_gradcam'"),
    ("foo", 1, r"'augmented_gradcam' does not take the option\(s\) \['foo'\]; it takes \['batch_size', "),
]
TAKES_NONE = r"'{}' does not take the option\(s\) \['foo'\]; it takes none\."
UNEXPECTED = r"{} got an unexpected keyword argument 'foo'"
NOT_BOOL = r"`{}` must be True or False, got {}\."
NOT_POSITIVE_INT = r"`{}` must be an integer ≥ 1"
GRADCAM_SCORE = r"`score` must be one of \('logit', 'centred'\) or a function of the logits, got {}\."
NO_DELTA = r"`return_convergence_delta` is not available for '{}': it has no convergence delta"
RISE = {"n_masks": 4, "cell_size": 4}
SMOOTH = {"nt_samples": 2}
IG = {"n_steps": 4}

OPTION_CASES = [
    *[clear(f"augmented_gradcam:{option}={value!r}", build("augmented_gradcam", **{**AUG, option: value}),
            ValueError, message) for option, value, message in AUGMENTED],
    clear("augmented_gradcam.attribute:n_augmentations=0", explain("augmented_gradcam", options=AUG, n_augmentations=0),
          ValueError, r"`n_augmentations` must be an integer ≥ 1, got 0\."),
    clear("augmented_gradcam.attribute:solver='sgd'", explain("augmented_gradcam", options=AUG, solver="sgd"),
          ValueError, r"`solver` must be one of \['adam', 'primal_dual'\], got 'sgd'\."),
    clear("augmented_gradcam.attribute:foo=1", explain("augmented_gradcam", options=AUG, foo=1),
          ValueError, r"'augmented_gradcam' does not take the option\(s\) \['foo'\]; it takes \["),
    clear("augmented_gradcam:base='nope'", build("augmented_gradcam", base="nope"), ValueError,
          r"`base` must be a registered layer CAM .*got 'nope': unknown method 'nope'"),
    clear("augmented_gradcam:base=123", build("augmented_gradcam", base=123), TypeError, r"`base` must be"),
    # recipro_cam
    clear("recipro_cam:gaussian='no'", build("recipro_cam", gaussian="no"), ValueError,
          NOT_BOOL.format("gaussian", "'no'")),
    clear("recipro_cam:gaussian=1", build("recipro_cam", gaussian=1), ValueError, NOT_BOOL.format("gaussian", "1")),
    clear("recipro_cam:gaussian=None", build("recipro_cam", gaussian=None), ValueError,
          NOT_BOOL.format("gaussian", "None")),
    *[clear(f"recipro_cam:chunk_size={value!r}", build("recipro_cam", chunk_size=value), ValueError,
            NOT_POSITIVE_INT.format("chunk_size") + f", got {value!r}") for value in (0, -4, True, "8", 2.5)],
    clear("recipro_cam:reshape_transform=fn", build("recipro_cam", reshape_transform=lambda t: t), ValueError,
          r"`reshape_transform` is not supported by 'recipro_cam'; use 'gradcam'"),
    clear("recipro_cam.attribute:foo=1", explain("recipro_cam", foo=1), ValueError,
          r"'recipro_cam' does not take the option\(s\) \['foo'\]; it takes \['score'\]"),
    clear("recipro_cam.attribute:score='logit'", explain("recipro_cam", score="logit"), ValueError,
          r"`score` of recipro_cam must be a function of the logits and the image index"),
    # rise: checked on construction and per call
    *[clear(f"rise:{option}={value!r}", build("rise", **{**RISE, option: value}), ValueError,
            NOT_POSITIVE_INT.format(option) + f", got {value!r}")
      for option, value in (("n_masks", 0), ("n_masks", "ten"), ("n_masks", True), ("n_masks", 2.5), ("cell_size", 0),
                            ("cell_size", 2.5), ("batch_size", 0), ("batch_size", -1))],
    *[clear(f"rise:p={value!r}", build("rise", **{**RISE, "p": value}), ValueError,
            rf"`p` must be a finite number > 0 and ≤ 1, got {value!r}") for value in (0, 1.5, NAN, "0.5", True)],
    clear("rise:seed='a'", build("rise", **{**RISE, "seed": "a"}), ValueError, r"`seed` must be an integer ≥ 0"),
    clear("rise:seed=-1", build("rise", **{**RISE, "seed": -1}), ValueError, r"`seed` must be an integer ≥ 0"),
    clear("rise.attribute:n_masks=0", explain("rise", options=RISE, n_masks=0), ValueError,
          NOT_POSITIVE_INT.format("n_masks") + ", got 0"),
    clear("rise:foo=1", build("rise", foo=1), TypeError, UNEXPECTED.format(r"RISE\.__init__\(\)")),
    clear("rise.attribute:foo=1", explain("rise", options=RISE, foo=1), ValueError,
          r"'rise' does not take the option\(s\) \['foo'\]; it takes \['batch_size', 'cell_size', 'n_masks', 'p', "
          r"'seed'\]"),
    # smooth: NoiseTunnel's options, checked before Captum sees them
    *[clear(f"smooth:saliency:{option}={value!r}", build("smooth:saliency", **{**SMOOTH, option: value}),
            ValueError, message)
      for option, value, message in (
          ("nt_samples", 0, NOT_POSITIVE_INT.format("nt_samples")),
          ("nt_samples", -1, NOT_POSITIVE_INT.format("nt_samples")),
          ("nt_samples", "4", NOT_POSITIVE_INT.format("nt_samples")),
          ("nt_samples", 2.5, NOT_POSITIVE_INT.format("nt_samples")),
          ("nt_samples", True, NOT_POSITIVE_INT.format("nt_samples")),
          ("stdevs", -1.0, r"`stdevs` must be a finite number ≥ 0"),
          ("stdevs", NAN, r"`stdevs` must be a finite number ≥ 0"),
          ("stdevs", "0.1", r"`stdevs` must be a finite number ≥ 0"),
          ("nt_samples_batch_size", 0, NOT_POSITIVE_INT.format("nt_samples_batch_size")))],
    clear("smooth:saliency.attribute:nt_samples=0", explain("smooth:saliency", options=SMOOTH, nt_samples=0),
          ValueError, NOT_POSITIVE_INT.format("nt_samples")),
    clear("get_method:name='smooth:smooth:saliency'", build("smooth:smooth:saliency", **SMOOTH), ValueError,
          r"compositions do not nest: 'smooth:smooth:saliency'; use one prefix, e\.g\. 'smooth:saliency'"),
    clear("smooth:saliency:foo=1", build("smooth:saliency", foo=1), TypeError,
          UNEXPECTED.format(r"Saliency\.__init__\(\)")),
    # gradcam (pytorch-grad-cam adapter) and the layer-method contract
    clear("gradcam.attribute:aug_smooth='yes'", explain("gradcam", aug_smooth="yes"), ValueError,
          NOT_BOOL.format("aug_smooth", "'yes'")),
    clear("gradcam.attribute:eigen_smooth=1", explain("gradcam", eigen_smooth=1), ValueError,
          NOT_BOOL.format("eigen_smooth", "1")),
    clear("gradcam.attribute:foo=1", explain("gradcam", foo=1), ValueError,
          r"'gradcam' does not take the option\(s\) \['foo'\]; it takes \['aug_smooth', 'eigen_smooth'\]"),
    clear("gradcam:foo=1", explain("gradcam", options={"foo": 1}), TypeError,
          UNEXPECTED.format(r"GradCAM\.__init__\(\)")),
    clear("gradcam:reshape_transform='x'", build("gradcam", reshape_transform="x"), ValueError,
          r"`reshape_transform` must be a function \(N, tokens, C\) -> \(N, C, h, w\), got str"),
    *[clear(f"gradcam:input_size={value!r}", layer_of("gradcam", input_size=value), ValueError,
            r"`input_size` must be \(C, H, W\): three integers ≥ 1, e\.g\. \(3, 224, 224\)")
      for value in ((3, 8), "abc", (3, -8, 8), (3.0, 8, 8))],
    clear("gradcam.attribute:return_convergence_delta=True", explain("gradcam", return_convergence_delta=True),
          ValueError, NO_DELTA.format("gradcam")),
    clear("gradcam:upsample='False'", build("gradcam", upsample="False"), ValueError,
          NOT_BOOL.format("upsample", "'False'")),
    clear("recipro_cam:upsample=0", build("recipro_cam", upsample=0), ValueError, NOT_BOOL.format("upsample", "0")),
    # differentiable / positive Grad-CAM
    clear("differentiable_gradcam.attribute:score='prob'", explain("differentiable_gradcam", score="prob"), ValueError,
          GRADCAM_SCORE.format("'prob'")),
    clear("differentiable_gradcam.attribute:score=5", explain("differentiable_gradcam", score=5), ValueError,
          GRADCAM_SCORE.format("5")),
    clear("differentiable_gradcam.attribute:score=identity", explain("differentiable_gradcam", score=lambda z, _: z),
          ValueError, r"a `score` function must give one value per image \(2,\), got shape \(2, 3\)"),
    clear("differentiable_gradcam.attribute:create_graph='yes'", explain("differentiable_gradcam", create_graph="yes"),
          ValueError, NOT_BOOL.format("create_graph", "'yes'")),
    clear("differentiable_gradcam.attribute:eigen_smooth='no'", explain("differentiable_gradcam", eigen_smooth="no"),
          ValueError, NOT_BOOL.format("eigen_smooth", "'no'")),
    clear("positive_gradcam.attribute:create_graph=1", explain("positive_gradcam", create_graph=1), ValueError,
          NOT_BOOL.format("create_graph", "1")),
    # Captum's methods: options go to Captum
    clear("integrated_gradients.attribute:foo=1", explain("integrated_gradients", foo=1), ValueError,
          r"'integrated_gradients' does not take the option\(s\) \['foo'\]; it takes \['additional_forward_args', "
          r"'baselines', 'internal_batch_size', 'method', 'n_steps', 'return_convergence_delta'\]"),
    *[clear(f"integrated_gradients.attribute:n_steps={value!r}", explain("integrated_gradients", n_steps=value),
            ValueError, NOT_POSITIVE_INT.format("n_steps")) for value in (0, -1, "4")],
    clear("integrated_gradients.attribute:method='simpson'", explain("integrated_gradients", method="simpson", **IG),
          ValueError, r"`method` must be one of \['gausslegendre', 'riemann_left', .*got 'simpson'"),
    clear("integrated_gradients.attribute:baselines=(1,3,4,4)",
          explain("integrated_gradients", baselines=torch.zeros(1, 3, 4, 4), **IG), ValueError,
          r"`baselines` has shape \(1, 3, 4, 4\); pass a number or a tensor of shape \(1, 3, 8, 8\)"),
    clear("integrated_gradients.attribute:return_convergence_delta='yes'",
          explain("integrated_gradients", return_convergence_delta="yes", **IG), ValueError,
          NOT_BOOL.format("return_convergence_delta", "'yes'")),
    clear("saliency:foo=1", build("saliency", foo=1), TypeError, UNEXPECTED.format(r"Saliency\.__init__\(\)")),
    clear("saliency.attribute:foo=1", explain("saliency", foo=1), ValueError,
          r"'saliency' does not take the option\(s\) \['foo'\]; it takes \['abs', 'additional_forward_args'\]"),
    clear("saliency.attribute:return_convergence_delta=True", explain("saliency", return_convergence_delta=True),
          ValueError, NO_DELTA.format("saliency")),
    clear("saliency.attribute:abs='False'", explain("saliency", abs="False"), ValueError,
          NOT_BOOL.format("abs", "'False'")),
    clear("layer_gradcam.attribute:foo=1", explain("layer_gradcam", foo=1), ValueError,
          r"'layer_gradcam' does not take the option\(s\) \['foo'\]; it takes \['additional_forward_args', "
          r"'attr_dim_summation', 'attribute_to_layer_input', 'grad_kwargs', 'relu_attributions'\]"),
    clear("layer_gradcam:reshape_transform=fn", build("layer_gradcam", reshape_transform=lambda t: t), ValueError,
          r"`reshape_transform` is not supported by 'layer_gradcam'; use 'gradcam'"),
    clear("layer_gradcam.attribute:return_convergence_delta=True",
          explain("layer_gradcam", return_convergence_delta=True), ValueError, NO_DELTA.format("layer_gradcam")),
    # cam, erf, topgap_cam, expansion_cam
    clear("cam.attribute:foo=1", explain("cam", foo=1), ValueError, TAKES_NONE.format("cam")),
    clear("cam:foo=1", build("cam", foo=1), TypeError, UNEXPECTED.format(r"__init__\(\)")),
    clear("cam:reshape_transform=fn", build("cam", reshape_transform=lambda t: t), ValueError,
          r"`reshape_transform` is not supported by 'cam'; use 'gradcam' or 'differentiable_gradcam'"),
    clear("cam:layer='features.0'", explain("cam", options={"layer": "features.0"}), ValueError,
          r"CAM needs a GAP\+FC network: .*Pass the last feature block as `layer`, or use 'gradcam'"),
    clear("cam:model=no-linear", explain("cam", model="conv"), ValueError,
          r"CAM needs a network ending in global average pooling \+ a linear classifier; .*Use 'gradcam'"),
    clear("gradcam:model=no-spatial-layer", explain("gradcam", model="mlp"), ValueError,
          r"no submodule of the model outputs a spatial \(N, C, H, W\) map; .*pass `layer=` explicitly"),
    clear("erf.attribute:foo=1", explain("erf", foo=1), ValueError, TAKES_NONE.format("erf")),
    clear("erf_at:positions=[]", lambda env: erf_at(env.net, X, env.net.features[4], []), ValueError,
          r"`positions` is empty; pass at least one \(i, j\) of the layer's output"),
    *[clear(f"erf_at:positions=[{position}]", lambda env, p=position: erf_at(env.net, X, env.net.features[4], [p]),
            ValueError, r"`positions` must lie inside the layer's 8 × 8 output") for position in ((9, 9), (-1, 0))],
    clear("topgap_cam:foo=1", build("topgap_cam", model="topgap", foo=1), TypeError,
          UNEXPECTED.format(r"TopGAPCAM\.__init__\(\)")),
    clear("topgap_cam.attribute:foo=1", explain("topgap_cam", model="topgap", foo=1), ValueError,
          TAKES_NONE.format("topgap_cam")),
    clear("topgap_cam:model=not-top-gap", explain("topgap_cam"), TypeError,
          r"Top-GAP CAM needs a Top-GAP model .*build one with timm\.create_model\('topgap_resnet18'"),
    clear("topgap_cam.attribute:inputs=1x1-image", explain("topgap_cam", torch.rand(1, 3, 1, 1), model="topgap"),
          ValueError, r"`k` = 4 exceeds the 1 positions of the map \(H·W\); use 1 ≤ k ≤ 1 or a float fraction"),
    clear("topgap_cam.attribute:return_convergence_delta=True",
          explain("topgap_cam", model="topgap", return_convergence_delta=True), ValueError,
          NO_DELTA.format("topgap_cam")),
    clear("topgap_cam:upsample='no'", build("topgap_cam", model="topgap", upsample="no"), ValueError,
          NOT_BOOL.format("upsample", "'no'")),
    clear("expansion_cam:expansion=None", build("expansion_cam"), ValueError,
          r"'expansion_cam' needs `expansion=`: an ExpansionNet built over this model"),
]

# --- get_method and the registry ----------------------------------------------------------------------------------

NOT_A_NAME = r"`name` must be a method name \(str\), got {}; see list_methods\(\)"
NOT_A_MODULE = r"`model` must be a torch\.nn\.Module, got {}\."
LAYER_IN_PIXEL = r"`layer` is not used by the pixel method '{}'; leave it None\."
NOT_A_SUBMODULE = r"`layer` must be a submodule of the model \(or its dotted name\); got {} that is not part of it"

REGISTRY_CASES = [
    clear("get_method:name='gradkam'", build("gradkam"), ValueError,
          r"unknown method 'gradkam'; closest names: \[.*'gradcam'.*\]\. See captum_topgap\.list_methods\(\)"),
    clear("get_method:name=''", build(""), ValueError, r"unknown method ''; closest names: .*list_methods\(\)"),
    clear("get_method:name=42", build(42), TypeError, NOT_A_NAME.format("int")),
    clear("get_method:name=None", build(None), TypeError, NOT_A_NAME.format("NoneType")),
    clear("get_method:name='blur:gradcam'", build("blur:gradcam"), ValueError,
          r"unknown composition 'blur' in 'blur:gradcam'; known: \['smooth:NAME'\]"),
    clear("get_method:name='smooth:nope'", build("smooth:nope"), ValueError, r"unknown method 'nope'; closest names"),
    clear("get_method:name='smooth:'", build("smooth:"), ValueError, r"unknown method ''; closest names"),
    clear("method_spec:name=3", lambda env: method_spec(3), TypeError, NOT_A_NAME.format("int")),
    clear("canonical_name:name=None", lambda env: canonical_name(None), TypeError, NOT_A_NAME.format("NoneType")),
    clear("GradCamBridge.of:method='nope'", lambda env: GradCamBridge.of("nope"), ValueError,
          r"unknown method 'nope'; closest names"),
    clear("get_method:layer='features.9'", build("gradcam", layer="features.9"), ValueError,
          r"`layer` 'features\.9' is not a submodule of the model; closest names: \['features\."),
    clear("get_method:layer=foreign-conv", build("gradcam", layer=nn.Conv2d(3, 3, 1)), ValueError,
          NOT_A_SUBMODULE.format("Conv2d")),
    clear("get_method:layer=3", build("gradcam", layer=3), ValueError, NOT_A_SUBMODULE.format("int")),
    clear("get_method:layer=['features']", build("gradcam", layer=["features"]), ValueError,
          NOT_A_SUBMODULE.format("list")),
    *[clear(f"{name}:layer='features'", build(name, layer="features"), ValueError, LAYER_IN_PIXEL.format(name))
      for name in ("saliency", "integrated_gradients", "rise", "erf")],
    clear("topgap_cam:layer='head'", build("topgap_cam", model="topgap", layer="head"), ValueError,
          r"`layer` is not used by 'topgap_cam': it reads the model's own class maps; leave it None\."),
    clear("get_method:model=function", lambda env: captum_topgap.get_method("saliency", lambda x: x), TypeError,
          NOT_A_MODULE.format("function")),
    clear("get_method:model=None", lambda env: captum_topgap.get_method("gradcam", None), TypeError,
          NOT_A_MODULE.format("NoneType")),
    clear("get_method:model='resnet18'", lambda env: captum_topgap.get_method("gradcam", "resnet18"), TypeError,
          NOT_A_MODULE.format("str")),
    clear("register_method:kind='bad'", lambda env: register_method("bad_kind", kind="bad"), ValueError,
          r"`kind` must be 'pixel', 'layer' or 'model', got 'bad'\."),
    clear("register_method:name='Grad-CAM'", lambda env: register_method("Grad-CAM")(lambda model, layer=None: None),
          ValueError, r"method name 'Grad-CAM' is already registered by 'gradcam'; choose another name"),
    clear("register_method:name='gradcam'", lambda env: register_method("gradcam")(lambda model, layer=None: None),
          ValueError, r"method name 'gradcam' is already registered \(origin 'grad-cam'\); choose another name, or "
          r"pass replace=True"),
]

# --- Top-GAP networks and their pooling ---------------------------------------------------------------------------


def topgap_net(**options: Any) -> Call:
    """A tiny Top-GAP network over conftest's two-stage backbone, with ``options`` overriding the defaults."""
    defaults = {"num_classes": 3, "k": 4, "fpn_channels": 4, "min_reduction": 1}
    return lambda env: TopGAPNet(TinyFeatures(), **{**defaults, **options})


K_INT = r"`k` must be at least 1 position, got {}\."
K_FRACTION = r"`k` as a fraction must be in \(0, 1\], got {}; pass an int to count positions"
K_TYPE = r"`k` must be an int \(positions\) or a float fraction, got {}\."
DROP_RATE = r"`drop_rate` must be in \[0, 1\), got {}\."

TOPGAP_CASES = [
    clear("top_k_pool:x=int64", lambda env: top_k_pool(torch.ones(1, 1, 2, 2, dtype=torch.long), 2), TypeError,
          r"TopKPool averages its maps, so they must be floating point, got torch\.int64; pass x\.float\(\)"),
    clear("timm.create_model(topgap_resnet18):k=0",
          lambda env: timm.create_model("topgap_resnet18", k=0, num_classes=3), ValueError, K_INT.format(0)),
    clear("timm.create_model(topgap_resnet18):global_pool='avg'",
          lambda env: timm.create_model("topgap_resnet18", global_pool="avg", num_classes=3), ValueError,
          r"`global_pool`='avg' is not available: Top-GAP pools each class map with top-k \(set `k`"),
    clear("timm.create_model(topgap_resnet18):pretrained=True",
          lambda env: timm.create_model("topgap_resnet18", pretrained=True), ValueError,
          r"pretrained=True is not available — no Top-GAP weights exist offline\. Train one"),
    clear("timm.create_model(topgap_resnet18):num_classes=-1",
          lambda env: timm.create_model("topgap_resnet18", num_classes=-1), ValueError,
          r"`num_classes` must be an integer ≥ 0, got -1"),
    clear("TopGAPNet:k=-1", topgap_net(k=-1), ValueError, K_INT.format(-1)),
    *[clear(f"TopGAPNet:k={value!r}", topgap_net(k=value), ValueError, K_FRACTION.format(value))
      for value in (1.5, 0.0, NAN)],
    *[clear(f"TopGAPNet:k={value!r}", topgap_net(k=value), TypeError, K_TYPE.format(type_name))
      for value, type_name in (("a", "str"), (True, "bool"), (None, "NoneType"), (np.int64(4), "int64"))],
    clear("TopGAPNet.forward:k=100>positions", lambda env: topgap_net(k=100)(env)(X), ValueError,
          r"`k` = 100 exceeds the 64 positions of the map \(H·W\); use 1 ≤ k ≤ 64 or a float fraction"),
    *[clear(f"TopGAPNet:drop_rate={value!r}", topgap_net(drop_rate=value), ValueError, DROP_RATE.format(value))
      for value in (1.0, -0.1, NAN)],
    clear("TopGAPNet:min_reduction=64", topgap_net(min_reduction=64), ValueError,
          r"`min_reduction` = 64 keeps no stage of TinyFeatures \(its stages reduce the input by \[1, 2\]\); pass "
          r"min_reduction ≤ 2 \(the default is 4\)"),
    clear("TopGAPNet.reset_classifier:global_pool='avg'",
          lambda env: env.topgap.reset_classifier(3, global_pool="avg"), ValueError,
          r"`global_pool`='avg' is not available: Top-GAP pools with top-k"),
    clear("TopGAPNet.forward_intermediates:output_fmt='NHWC'",
          lambda env: env.topgap.forward_intermediates(X, output_fmt="NHWC"), ValueError,
          r"`output_fmt` must be 'NCHW' for a CNN, got 'NHWC'"),
    clear("TopGAPNet:drop_rate='0.1'", topgap_net(drop_rate="0.1"), ValueError, DROP_RATE.format("'0.1'")),
    *[clear(f"TopGAPNet:num_classes={value!r}", topgap_net(num_classes=value), ValueError,
            rf"`num_classes` must be an integer ≥ 0, got {value!r}") for value in (2.5, "3", -1)],
    clear("TopGAPNet.reset_classifier:num_classes=-1", lambda env: env.topgap.reset_classifier(-1), ValueError,
          r"`num_classes` must be an integer ≥ 0, got -1"),
    *[clear(f"TopGAPNet:fpn_channels={value}", topgap_net(fpn_channels=value), ValueError,
            rf"`fpn_channels` must be an integer ≥ 1, got {value}") for value in (-1, 0)],
    clear("TopGAPNet:backbone=Conv2d", lambda env: TopGAPNet(nn.Conv2d(3, 3, 1), num_classes=3), TypeError,
          r"`backbone` must be a timm model name or a module with timm's `feature_info`"),
    clear("TopGAPNet:backbone='nope_net'", lambda env: TopGAPNet("nope_net", num_classes=3), ValueError,
          r"`backbone` 'nope_net' is not a timm model; closest names: .*timm\.list_models\(\)"),
    clear("TopKPool:k=0", lambda env: TopKPool(0), ValueError, K_INT.format(0)),
    clear("TopKPool:k=2.0", lambda env: TopKPool(2.0), ValueError, K_FRACTION.format(2.0)),
    clear("TopKPool:k='3'", lambda env: TopKPool("3"), TypeError, K_TYPE.format("str")),
    clear("top_k_pool:x=3-D", lambda env: top_k_pool(torch.rand(1, 4, 4), 2), ValueError,
          r"TopKPool expects \(N, C, H, W\) maps, got shape \(1, 4, 4\)"),
    clear("top_k_pool:k=5>positions", lambda env: top_k_pool(torch.rand(1, 1, 2, 2), 5), ValueError,
          r"`k` = 5 exceeds the 4 positions of the map \(H·W\); use 1 ≤ k ≤ 4"),
]

# --- evaluation metrics -------------------------------------------------------------------------------------------

THRESHOLD = r"`{}` must be a finite number ≥ 0 and ≤ 1"
SHAPES = r"`masks` has shape {} but `heatmaps` \(2, 1, 8, 8\); upsample the heat-maps to the mask size"
NAN_HEAT = HEAT.index_fill(3, torch.tensor([0]), NAN)

METRIC_CASES = [
    clear("mask_iou:heatmaps=3-channels", lambda env: metrics.mask_iou(torch.rand(2, 3, 8, 8), MASK), ValueError,
          r"`heatmaps` must be \(N, 1, H, W\), got \(2, 3, 8, 8\); sum pixel attributions over channels first"),
    clear("mask_iou:masks=other-size", lambda env: metrics.mask_iou(HEAT, MASK[..., :4, :]), ValueError,
          SHAPES.format(r"\(2, 1, 4, 8\)")),
    clear("mask_iou:masks=other-batch", lambda env: metrics.mask_iou(HEAT, MASK[:1]), ValueError,
          SHAPES.format(r"\(1, 1, 8, 8\)")),
    clear("pointing_game:heatmaps=5-D", lambda env: metrics.pointing_game(HEAT[None], MASK), ValueError,
          r"`heatmaps` must be \(N, 1, H, W\), got \(1, 2, 1, 8, 8\)"),
    clear("energy_pointing_game:masks=other-size", lambda env: metrics.energy_pointing_game(HEAT, MASK[..., :4]),
          ValueError, SHAPES.format(r"\(2, 1, 8, 4\)")),
    clear("box_from_heatmap:heatmap=batch", lambda env: metrics.box_from_heatmap(torch.rand(2, 8, 8)), ValueError,
          r"`heatmap` must be one \(H, W\) map, got shape \(2, 8, 8\)"),
    clear("roc_auc:labels=one-class", lambda env: metrics.roc_auc(torch.rand(4), torch.ones(4)), ValueError,
          r"`labels` must contain both classes \(0 and 1\) for a ROC curve"),
    clear("accuracy:batch_size=0", lambda env: metrics.accuracy(env.net, SAMPLES, batch_size=0), ValueError,
          r"`batch_size` must be an integer ≥ 1, got 0\."),
    clear("erf_distance:masks=other-size", lambda env: metrics.erf_distance(env.net, X, MASK[..., :4, :], LABELS),
          ValueError, SHAPES.format(r"\(2, 1, 4, 8\)")),
    *[clear(f"mask_iou:threshold={value!r}", lambda env, t=value: metrics.mask_iou(HEAT, MASK, threshold=t),
            ValueError, THRESHOLD.format("threshold")) for value in (1.5, -1.0, NAN, "0.5")],
    clear("mask_iou:heatmaps=numpy", lambda env: metrics.mask_iou(HEAT.numpy(), MASK), TypeError,
          r"`heatmaps` must be a torch\.Tensor of shape \(N, 1, H, W\), got ndarray; convert it with torch\.as_tensor"),
    clear("mask_iou:heatmaps=NaN", lambda env: metrics.mask_iou(NAN_HEAT, MASK), ValueError,
          r"`heatmaps` contains NaN or Inf values; clean them \(e\.g\. torch\.nan_to_num\) first"),
    clear("mean_mask_iou:thresholds=[]", lambda env: metrics.mean_mask_iou(HEAT, MASK, thresholds=[]), ValueError,
          r"`thresholds` is empty; pass at least one threshold in \[0, 1\]"),
    clear("pointing_game:tolerance=-1", lambda env: metrics.pointing_game(HEAT, MASK, tolerance=-1), ValueError,
          r"`tolerance` must be an integer ≥ 0, got -1\."),
    clear("pointing_game:tolerance=1.5", lambda env: metrics.pointing_game(HEAT, MASK, tolerance=1.5), ValueError,
          r"`tolerance` must be an integer ≥ 0, got 1\.5 \(float\)"),
    clear("box_from_heatmap:rel_threshold=1.5",
          lambda env: metrics.box_from_heatmap(HEAT[0, 0], rel_threshold=1.5), ValueError,
          THRESHOLD.format("rel_threshold")),
    clear("box_iou:a=inverted-box", lambda env: metrics.box_iou((3, 3, 0, 0), (0, 0, 1, 1)), ValueError,
          r"`a` must be a box \(x0, y0, x1, y1\) of finite numbers with x0 ≤ x1 and y0 ≤ y1"),
    clear("roc_auc:labels=other-length", lambda env: metrics.roc_auc(torch.rand(4), torch.tensor([0, 1, 0])),
          ValueError, r"`scores` and `labels` must have the same length \(one per sample\), got 4 and 3"),
    clear("roc_auc:scores=NaN",
          lambda env: metrics.roc_auc(torch.tensor([0.1, NAN, 0.3, 0.4]), torch.tensor([0, 1, 0, 1])), ValueError,
          r"`scores` contains NaN; a NaN has no rank"),
    clear("confusion_matrix:predictions=3>classes",
          lambda env: metrics.confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 2), ValueError,
          r"`predictions` \[3\] out of range for 2 classes; use indices in \[0, 1\]"),
    clear("confusion_matrix:predictions=-1",
          lambda env: metrics.confusion_matrix(torch.tensor([0, -1]), torch.tensor([0, 1]), 2), ValueError,
          r"`predictions` \[-1\] out of range for 2 classes; use indices in \[0, 1\]"),
    clear("predict:batch_size=0", lambda env: metrics.predict(env.net, X, batch_size=0), ValueError,
          NOT_POSITIVE_INT.format("batch_size") + ", got 0"),
]

# --- training: losses, objectives, checkpoints, the loop ----------------------------------------------------------


def reff(weights: tuple[float, ...] = (1.0,), mask: object = None, target: torch.Tensor = LABELS) -> Call:
    """ReFF over the tiny CNN's first ReLU, called on ``X`` with ``mask`` (``None``: an all-ones mask)."""
    def call(env: Env) -> object:
        term = ReFF(env.net, [env.net.features[2]], weights=weights)
        return term(X, target, torch.ones(2, 1, 8, 8) if mask is None else mask)

    return call


def checkpoint(write: Callable[[Path], object], load: Callable[[Path], object] = load_checkpoint) -> Call:
    """``load(path)`` of a file made by ``write(path)``."""
    def call(env: Env) -> object:
        path = env.folder / "checkpoint.pt"
        write(path)
        return load(path)

    return call


def fit(**config: Any) -> Call:
    """One epoch of the training loop over four images with ``config`` overriding a quiet TrainConfig."""
    settings = {"epochs": 1, "batch_size": 2, "progress": False, **config}
    return lambda env: train(env.net, CrossEntropy(), SAMPLES, None, TrainConfig(**settings))


def written(path: Path) -> Path:
    """``path``, created as a small text file."""
    path.write_text("taken")
    return path


def empty(path: Path) -> Path:
    """``path``, created as an empty folder."""
    path.mkdir(exist_ok=True)
    return path


QUIET = TrainConfig(epochs=1, batch_size=2, progress=False)
CAM = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(5))
SPARSITY = r"`sparsity` \(λ\) must be ≥ 0"
READ_SAFELY = r"is not a checkpoint torch can read safely \(.*\); pass a best\.pt or last\.pt"
NAN_WEIGHTS = {"model": {"w": torch.tensor([NAN])}, "metadata": {"model": "test_resnet", "model_kwargs": {}}}

LOSSES: dict[str, Callable[[Env], Callable[..., torch.Tensor]]] = {
    "ReFF": lambda env: ReFF(env.net, [env.net.features[2]], weights=(1.0,)),
    "RRR": lambda env: RRR(env.net),
}
"""The explanation losses, each called as loss(inputs, target, mask)."""

TRAINING_CASES = [
    *[clear(f"{loss}:target={kind}", lambda env, loss=loss, t=target: LOSSES[loss](env)(X, t, MASK.float()),
            ValueError, rf"`target` must be \(2,\) integer class indices, got {found}; for one-hot labels pass "
            r"target\.argmax\(1\)") for loss in LOSSES for kind, target, found in (
        ("float", LABELS.float(), r"a torch\.float32 tensor of shape \(2,\)"),
        ("one-hot", torch.eye(3)[LABELS].long(), r"a torch\.int64 tensor of shape \(2, 3\)"),
        ("1-for-2-images", LABELS[:1], r"a torch\.int64 tensor of shape \(1,\)"),
        ("list", [0, 1], "list"))],
    clear("topgap_loss:target=one-hot", lambda env: topgap_loss(CAM.mean((2, 3)), CAM, torch.eye(3)[LABELS]),
          ValueError, r"`target` must be \(2,\) integer class indices, got a torch\.float32 tensor of shape \(2, 3\)"),
    clear("topgap_loss:sparsity=-0.1", lambda env: topgap_loss(CAM.mean((2, 3)), CAM, LABELS, sparsity=-0.1),
          ValueError, SPARSITY + r", got -0\.1\."),
    *[clear(f"topgap_loss:sparsity={value!r}", lambda env, s=value: topgap_loss(CAM.mean((2, 3)), CAM, LABELS, s),
            ValueError, SPARSITY + f", got {shown}; pass a finite number") for value, shown in (
        (NAN, "nan"), (INF, "inf"), ("0.1", "'0.1'"))],
    clear("topgap_loss:target=5", lambda env: topgap_loss(CAM.mean((2, 3)), CAM, torch.tensor([0, 5])), ValueError,
          OUT_OF_RANGE.format(r"\[5\]")),
    clear("ReFF:variant='l3'", lambda env: ReFF(env.net, [env.net.features[2]], variant="l3"), ValueError,
          r"`variant` must be one of \['contrastive', 'l1', 'l2', 'reff', 'share', 'signed'\], got 'l3'"),
    clear("ReFF:weights=2-for-1-layer", lambda env: ReFF(env.net, [env.net.features[2]], weights=(1.0, 2.0)),
          ValueError, r"`weights` has 2 entries for 1 layers; give one per layer"),
    clear("ReFF:layers=foreign", lambda env: ReFF(env.net, [nn.Conv2d(3, 3, 1)]), ValueError,
          r"`layers` \['Conv2d'\] are not submodules of the model; pass modules of the model itself"),
    clear("ReFF:layers=None-without-stages", lambda env: ReFF(env.net), ValueError,
          r"cannot find four stages in TinyNet; pass `layers=`"),
    clear("ReFF.__call__:mask=2", reff(mask=torch.full((2, 1, 8, 8), 2.0)), ValueError,
          r"`mask` values must lie in \[0, 1\] \(1 = relevant\)"),
    clear("ReFF.__call__:mask=other-size", reff(mask=torch.ones(2, 1, 4, 4)), ValueError,
          r"`mask` has shape \(2, 1, 4, 4\) but the images are \(2, 3, 8, 8\); pass a mask of shape \(2, 1, 8, 8\)"),
    clear("ReFF.__call__:mask=list", reff(mask=[[1.0]]), TypeError, r"`mask` must be a torch\.Tensor, got list"),
    clear("RRR.__call__:mask=-1", lambda env: RRR(env.net)(X, LABELS, torch.full((2, 1, 8, 8), -1.0)), ValueError,
          r"`mask` values must lie in \[0, 1\] \(1 = relevant\)"),
    *[clear(f"ReFF:weights=({value!r},)", reff(weights=(value,)), ValueError,
            rf"`weights` must be finite numbers ≥ 0, one per layer, got \({value},\)") for value in (-1.0, NAN)],
    clear("ReFF.__call__:mask=NaN", reff(mask=torch.full((2, 1, 8, 8), NAN)), ValueError,
          r"`mask` values must lie in \[0, 1\] \(1 = relevant\) \(found NaN\)"),
    clear("ReFF.__call__:target=5", reff(target=torch.tensor([0, 5])), ValueError, OUT_OF_RANGE.format(r"\[5\]")),
    clear("ReFF:layers=[]", lambda env: ReFF(env.net, [], weights=()), ValueError,
          r"`layers` is empty; pass at least one module of the model"),
    clear("ExplanationObjective:weight=-1", lambda env: ExplanationObjective(RRR(env.net), weight=-1.0), ValueError,
          r"`weight` \(λ\) must be ≥ 0, got -1\.0\."),
    *[clear(f"ExplanationObjective:weight={value!r}",
            lambda env, w=value: ExplanationObjective(RRR(env.net), weight=w), ValueError,
            rf"`weight` \(λ\) must be ≥ 0, got {shown}; pass a finite number") for value, shown in (
        (NAN, "nan"), ("1", "'1'"))],
    clear("TopGAPObjective:sparsity=-1", lambda env: TopGAPObjective(-1.0)(env.topgap, collate(SAMPLES)), ValueError,
          SPARSITY + r", got -1\.0\."),
    clear("make_objective:method='sgd'", lambda env: make_objective("sgd", env.net), ValueError,
          r"`method` must be one of \('baseline', 'topgap', 'reff', 'rrr', 'abn', 'boxhead'\), got 'sgd'"),
    clear("make_objective:variant='l3'", lambda env: make_objective("reff", env.net, variant="l3"), ValueError,
          r"`variant` must be one of \[.*\], got 'l3'"),
    clear("make_objective:layers=['features.9']",
          lambda env: make_objective("reff", env.net, layers=["features.9"]), ValueError,
          r"`layer` 'features\.9' is not a submodule of the model; closest names"),
    clear("make_objective:variant='l1'-for-rrr", lambda env: make_objective("rrr", env.net, variant="l1"), ValueError,
          r"`variant` is a ReFF option; 'rrr' has none, got variant='l1'\. Leave it None"),
    clear("ExpansionObjective:model=TinyNet", lambda env: ExpansionObjective()(env.net, collate(SAMPLES)), TypeError,
          r"the expansion objective trains an ExpansionNet, got TinyNet"),
    clear("load_checkpoint:path=missing", lambda env: load_checkpoint(env.folder / "missing.pt"), FileNotFoundError,
          r"checkpoint .*missing\.pt does not exist; pass a best\.pt or last\.pt"),
    clear("load_checkpoint:path=folder", lambda env: load_checkpoint(env.folder), FileNotFoundError,
          r"does not exist; pass a best\.pt or last\.pt"),
    clear("load_checkpoint:path=text", checkpoint(lambda p: p.write_text("not a checkpoint")), ValueError,
          READ_SAFELY),
    clear("load_checkpoint:path=empty", checkpoint(lambda p: p.write_bytes(b"")), ValueError, READ_SAFELY),
    clear("load_checkpoint:path=pickled-object", checkpoint(lambda p: p.write_bytes(pickle.dumps(Path("x")))),
          ValueError, READ_SAFELY),
    clear("load_checkpoint:path=list", checkpoint(lambda p: torch.save([1, 2], p)), ValueError,
          r"holds a list, not a checkpoint dictionary; pass a best\.pt or last\.pt"),
    clear("load_model:checkpoint=NaN-weights", checkpoint(lambda p: torch.save(NAN_WEIGHTS, p), load_model),
          ValueError, r"has non-finite weights \(w\): its training diverged; retrain with a lower --lr"),
    clear("load_model:checkpoint=no-metadata", checkpoint(lambda p: torch.save({"epoch": 1}, p), load_model),
          ValueError, r"has no `model` entry \(the weights\): it holds \['epoch'\]; pass a best\.pt, last\.pt"),
    clear("load_model:checkpoint=weights-without-metadata",
          checkpoint(lambda p: torch.save({"model": {}}, p), load_model),
          ValueError, r"has weights but no model name in its metadata; it was not written by captum-topgap"),
    clear("load_model:checkpoint=model_kwargs-list", checkpoint(
        lambda p: torch.save({"model": {}, "metadata": {"model": "resnet18", "model_kwargs": [3]}}, p), load_model),
          ValueError, r"has `model_kwargs` \[3\] in its metadata, not a dictionary of keyword arguments"),
    clear("load_model:checkpoint=model_kwargs-unknown", checkpoint(
        lambda p: torch.save({"model": {}, "metadata": {"model": "resnet18", "model_kwargs": {"colour": 3}}}, p),
        load_model), ValueError, r"metadata builds resnet18 with `model_kwargs` \{'colour': 3\}, which it does not "
                                 r"take: .*colour"),
    clear("load_model:checkpoint=other-class-count", checkpoint(lambda p: torch.save(
        {"model": timm.create_model("resnet18", num_classes=5).state_dict(),
         "metadata": {"model": "resnet18", "model_kwargs": {"num_classes": 3}}}, p), load_model), ValueError,
          r"weights do not fit the resnet18 its metadata names \(size mismatch for fc\.weight: .*\); the file was "
          r"edited, or its metadata is of another model"),
    clear("load_model:checkpoint=other-architecture", checkpoint(lambda p: torch.save(
        {"model": TinyNet().state_dict(), "metadata": {"model": "resnet18", "model_kwargs": {"num_classes": 3}}}, p),
        load_model), ValueError, r"weights do not fit the resnet18 its metadata names \((Missing|Unexpected) key"),
    *[clear(f"load_model:device={device!r}", lambda env, d=device: load_model(env.folder / "any.pt", d), ValueError,
            message) for device, message in (
        ("bogus", r"`device` 'bogus' is not a torch device; pass 'cpu', 'cuda' or 'cuda:0'"),
        *([("cuda", r"`device` 'cuda': this machine has no CUDA device torch can use; pass device='cpu'")]
          if not torch.cuda.is_available() else []))],
    clear("load_checkpoint:path=text-'hello'", checkpoint(lambda p: p.write_text("hello")), ValueError, READ_SAFELY),
    clear("load_checkpoint:path=3", lambda env: load_checkpoint(3), TypeError,
          r"`path` must be a file path \(str or pathlib\.Path\), got int"),
    clear("load_model:checkpoint=unknown-model",
          checkpoint(lambda p: torch.save({"model": {}, "metadata": {"model": "nope_net"}}, p), load_model),
          ValueError, r"names the model 'nope_net' in its metadata \(`model`\), which timm does not know: .*"
          r"timm\.list_models\(\)"),
    clear("build_model:name='nope_net'", lambda env: build_model("nope_net"), ValueError,
          r"`name` 'nope_net' is not a timm model; closest names: \[.*\]\. See timm\.list_models\(\)"),
    *[clear(f"train:{option}={value!r}", fit(**{option: value}), ValueError, rf"`{option}` must be an integer ≥ {low}")
      for option, value, low in (("batch_size", 0, 1), ("batch_size", -2, 1), ("num_workers", -1, 0), ("epochs", 0, 1),
                                 ("epochs", -1, 1), ("epochs", "2", 1), ("seed", -1, 0))],
    clear("train:optimizer='rmsprop'", fit(optimizer="rmsprop"), ValueError,
          r"`optimizer` must be one of \['adam', 'sgd'\], got 'rmsprop'"),
    clear("train:resume=missing", lambda env: train(env.net, CrossEntropy(), SAMPLES, resume=env.folder / "no.pt"),
          FileNotFoundError, r"checkpoint .*no\.pt does not exist"),
    *[clear(f"train:{option}={value}", fit(**{option: value}), ValueError, rf"`{option}` must be a finite number")
      for option in ("lr", "momentum", "weight_decay") for value in (-1.0, NAN)],
    clear("train:momentum=1.5", fit(momentum=1.5), ValueError, r"`momentum` must be a finite number ≥ 0 and ≤ 1"),
    clear("train:lr=0", fit(lr=0.0), ValueError, r"`lr` must be a finite number > 0"),
    clear("train:device='tpu'", fit(device="tpu"), ValueError,
          r"`device` 'tpu' is not a torch device; pass 'cpu', 'cuda' or 'cuda:0'"),
    *([clear("train:device='cuda'-without-CUDA", fit(device="cuda"), ValueError,
             r"`device` 'cuda': this machine has no CUDA device torch can use")] if not torch.cuda.is_available()
      else []),
    clear("train:out_dir=existing-file", lambda env: train(env.net, CrossEntropy(), SAMPLES, None, QUIET,
                                                            out_dir=written(env.folder / "taken.txt")), ValueError,
          r"`out_dir` .*taken\.txt is a file; pass a folder"),
    clear("train:out_dir=/proc/x", lambda env: train(env.net, CrossEntropy(), SAMPLES, None, QUIET, out_dir="/proc/x"),
          ValueError, r"`out_dir` /proc/x cannot be written: .*; pass a folder you can write to"),
    clear("train:train_data=label-5", lambda env: train(env.net, CrossEntropy(), [(X[0], 5, None)] * 2, None, QUIET),
          ValueError, r"`labels of `train_data`` \[5\] out of range for a model with 3 outputs"),
    clear("train:train_data=NaN-image",
          lambda env: train(env.net, CrossEntropy(), [(torch.full_like(X[0], NAN), 0, None)] * 2, None, QUIET),
          ValueError, r"batch 1 of epoch 1 holds NaN or Inf pixels: the data, not the optimisation, is broken"),
    clear("TopGAPObjective:model=plain-CNN", lambda env: TopGAPObjective()(env.net, collate(SAMPLES)), TypeError,
          r"TopGAPObjective needs a Top-GAP model \(forward\(x, return_cam=True\)\), got TinyNet"),
]

# --- datasets -----------------------------------------------------------------------------------------------------


def dataset(name: str = "textured-mnist", split: str = "test", **options: Any) -> Call:
    return lambda env: make_dataset(name, split, **options)


def first_image(**options: Any) -> Call:
    """Shape of the first image of a two-image Textured MNIST test split."""
    return lambda env: make_dataset("textured-mnist", "test", limit=2, **options)[0][0].shape


PROBABILITY = r"`{}` must be a probability in \[0, 1\], got {}\."
SIZE = r"`size` must be an integer ≥ 1"
ONE = (torch.rand(3, 2, 2), 0, None)

DATA_CASES = [
    clear("make_dataset:name='nope'", lambda env: make_dataset("nope"), ValueError,
          r"`dataset` must be one of \['cifar10', 'cub', 'isic2017', 'mask-folder', 'oxford-pet', .*\], got 'nope'"),
    clear("make_dataset:split='dev'", dataset(split="dev"), ValueError,
          r"`split` must be one of \['test', 'train', 'val'\], got 'dev'"),
    *[clear(f"make_dataset:{option}={value!r}", dataset(**{option: value}), ValueError,
            PROBABILITY.format(option, shown)) for option, value, shown in (
        ("p", 1.5, r"1\.5"), ("p", -0.1, r"-0\.1"), ("q", 2, "2"), ("p", "0.5", "'0.5'"), ("p", NAN, "nan"))],
    clear("make_dataset:digit_size=99", dataset(size=16, digit_size=99), ValueError,
          r"`digit_size` must be in \[1, size=16\], got 99"),
    clear("make_dataset:textures=missing", dataset(size=8, textures="/nonexistent", limit=2), FileNotFoundError,
          r"`textures` folder /nonexistent does not exist; pass a torchvision DTD root"),
    clear("make_dataset:colour=3", dataset(colour=3), TypeError, r"unexpected keyword argument 'colour'"),
    clear("make_dataset(spurious-mnist):agreement=1.5", dataset("spurious-mnist", agreement=1.5), ValueError,
          PROBABILITY.format("agreement", r"1\.5")),
    clear("make_dataset(spurious-mnist):split='dev'", dataset("spurious-mnist", "dev"), ValueError,
          r"`split` must be one of \['test', 'train', 'val'\], got 'dev'"),
    clear("SpuriousBackgrounds:objects='cifar'", lambda env: SpuriousBackgrounds("test", objects="cifar"), ValueError,
          r"`objects` must be 'mnist' or 'fashion-mnist', got 'cifar'"),
    clear("make_dataset(mask-folder):root=missing-argument", dataset("mask-folder", "train"), TypeError,
          r"missing 1 required positional argument: 'root'"),
    clear("make_dataset(mask-folder):root='/nonexistent'", dataset("mask-folder", "train", root="/nonexistent"),
          FileNotFoundError, r"`root` /nonexistent/train has no images/ folder; expected /nonexistent/train/images/"),
    clear("make_dataset(oxford-pet):root='/nonexistent'", dataset("oxford-pet", root="/nonexistent"),
          FileNotFoundError, r"no Oxford-IIIT Pet under /nonexistent .*pass the right `root` or download=True"),
    clear("collate:samples=[]", lambda env: collate([]), ValueError, r"`samples` is empty; a batch needs at least one"),
    clear("collate:mask=other-size", lambda env: collate([(X[0], 0, torch.ones(1, 4, 4, dtype=torch.bool))]),
          ValueError, r"`mask` of sample 0 has size \(4, 4\) but its image is \(8, 8\); resize both together"),
    *[clear(f"PartiallyAnnotated:n_annotated={value}", lambda env, n=value: PartiallyAnnotated([ONE] * 3, n),
            ValueError, rf"`n_annotated` must be an integer in \[0, 3\], got {value}") for value in (-1, 5)],
    clear("PartiallyAnnotated:n_annotated=1.5", lambda env: PartiallyAnnotated([ONE] * 3, 1.5), ValueError,
          r"`n_annotated` must be an integer in \[0, 3\], got 1\.5 \(float\)"),
    clear("make_dataset:textures=a-file", dataset(size=8, textures=__file__, limit=2), NotADirectoryError,
          r"`textures` .*test_bad_inputs\.py is a file; pass the folder that holds the textures"),
    clear("make_dataset:textures=empty-folder", lambda env: make_dataset(
        "textured-mnist", "test", size=8, limit=2, textures=empty(env.folder / "no_textures")), FileNotFoundError,
          r"`textures` folder .*no_textures holds neither GIMP \.pat files nor a torchvision DTD dataset"),
    *[clear(f"TexturedMNIST.__getitem__:index={index!r}", lambda env, i=index: make_dataset(
        "textured-mnist", "test", size=8, limit=2)[i], error, message) for index, error, message in (
        (2, IndexError, r"sample index 2 out of range for a dataset of 2 samples; use 0 … 1 \(or −2 … −1"),
        (-3, IndexError, r"sample index -3 out of range for a dataset of 2 samples"),
        (1.5, TypeError, r"dataset indices must be integers, got 1\.5 \(float\)"))],
    clear("PartiallyAnnotated.__getitem__:index=3", lambda env: PartiallyAnnotated([ONE] * 3)[3], IndexError,
          r"sample index 3 out of range for a dataset of 3 samples"),
    clear("collate:images=mixed-sizes", lambda env: collate([ONE, (X[0], 0, None)]), ValueError,
          r"`samples` hold images of 2 sizes \[\(3, 2, 2\), \(3, 8, 8\)\]; a batch needs one size: resize them"),
    clear("batches:batch_size=0", lambda env: batches([ONE] * 3, 0), ValueError,
          r"`batch_size` must be an integer ≥ 1, got 0\."),
    clear("make_dataset:p=True", first_image(size=8, p=True), ValueError, PROBABILITY.format("p", "True")),
    *[clear(f"make_dataset:size={value!r}", dataset(size=value), ValueError, SIZE + rf", got {value}\.")
      for value in (0, -5)],
    *[clear(f"make_dataset:size={value!r}", first_image(size=value), ValueError, SIZE + f", got {shown}")
      for value, shown in ((8.7, r"8\.7 \(float\)"), ("8", r"'8' \(str\)"))],
    clear("make_dataset:limit=-1", lambda env: len(make_dataset("textured-mnist", "test", size=8, limit=-1)),
          ValueError, r"`limit` must be an integer ≥ 0, got -1\."),
    clear("make_dataset:seed=-1", dataset(split="val", size=8, seed=-1, limit=2), ValueError,
          r"`seed` must be an integer ≥ 0, got -1\."),
    clear("make_dataset:texture_scale=0", first_image(size=8, texture_scale=0), ValueError,
          r"`texture_scale` must be a finite number ≥ 1, got 0\."),
    clear("make_dataset:digits='/nonexistent'", dataset(size=8, digits="/nonexistent", limit=2), FileNotFoundError,
          r"`digits` folder /nonexistent holds no MNIST \(expected /nonexistent/MNIST/raw, torchvision's layout\); "
          r"pass the folder that contains MNIST/, or None for the bundled copy"),
    clear("make_dataset(spurious-mnist):size=0", dataset("spurious-mnist", size=0, limit=2), ValueError,
          SIZE + r", got 0\."),
    clear("resize_pair:size=0", lambda env: resize_pair(0)(X[0], MASK[0]), ValueError, SIZE + r", got 0\."),
]

# --- robustness ---------------------------------------------------------------------------------------------------


def attack(inputs: torch.Tensor = XS, labels: object = YS, **options: Any) -> Call:
    """Robust accuracy of a linear model on ``inputs`` under a two-step PGD (no budget unless ``eps`` is given)."""
    settings = {"attack": "pgd2", "eps": 0.0, **options}
    return lambda env: robust_accuracy(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), inputs, labels, **settings)


LABELS_SHAPE = r"labels must be integer class indices of shape \(4,\), got {}; for one-hot labels pass labels\.argmax"
EPS = r"`eps` must be a finite number ≥ 0"
STEPS = r"`steps` must be an integer ≥ 1"

ROBUSTNESS_CASES = [
    clear("robust_accuracy:attack='fgsm'", attack(attack="fgsm"), ValueError,
          r"attack='fgsm' is not known; use 'pgd', 'pgd20', 'pgd50', 'square', 'square<N>', 'apgd_ce<N>' or "
          r"'apgd_dlr<N>'"),
    clear("robust_accuracy:region='middle'", attack(region="middle"), ValueError,
          r"region='middle' is not known; use None, 'background' or 'object'"),
    clear("robust_accuracy:masks=None-for-region", attack(region="background"), ValueError,
          r"region='background' needs masks=: a \(N, 1, H, W\) boolean tensor"),
    clear("robust_accuracy:masks=other-size", attack(region="object", masks=torch.ones(4, 1, 1, 1, dtype=torch.bool)),
          ValueError, r"masks must have shape \(N, 1, H, W\) = \(4, 1, 2, 2\), got \(4, 1, 1, 1\)"),
    clear("robust_accuracy:inputs=normalised", attack(inputs=XS * 2 - 1), ValueError,
          r"inputs lie outside bounds=\(0\.0, 1\.0\) .*pass images in \[0\.0, 1\.0\] and the normalisation as "
          r"preprocessing="),
    clear("robust_accuracy:inputs=3-D", attack(inputs=XS[0]), ValueError, r"inputs must be a \(N, C, H, W\) tensor"),
    clear("robust_accuracy:labels=float", attack(labels=YS.float()), ValueError, LABELS_SHAPE.format(r"\(4,\)")),
    clear("robust_accuracy:labels=one-hot", attack(labels=torch.eye(2)[YS]), ValueError,
          LABELS_SHAPE.format(r"\(4, 2\)")),
    clear("robust_accuracy:labels=list", attack(labels=[0, 1, 0, 1]), ValueError, LABELS_SHAPE.format("list")),
    clear("robust_accuracy:preprocessing=std-0", attack(eps=0.1, preprocessing={"mean": 0.5, "std": 0.0}), ValueError,
          r"`preprocessing\['std'\]` must be one finite number or 3 \(one per channel\), each > 0, got 0\.0"),
    clear("robust_accuracy:preprocessing=mu", attack(eps=0.1, preprocessing={"mu": 0.5}), ValueError,
          r"`preprocessing` takes the keys 'mean' and 'std' \(Foolbox's\), got 'mu'"),
    clear("robust_accuracy:preprocessing=mean-2-values", attack(preprocessing={"mean": [0.5, 0.5]}), ValueError,
          r"`preprocessing\['mean'\]` must be one finite number or 3 \(one per channel\), got \[0\.5, 0\.5\]"),
    clear("robust_accuracy:labels>=classes", attack(labels=torch.tensor([0, 1, 2, 5])), ValueError,
          r"`labels` must be class indices in \[0, 2\) for this model's 2 classes, got 5"),
    clear("clean_accuracy:labels=y[:1]", lambda env: clean_accuracy(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)),
                                                                     XS, YS[:1]), ValueError,
          r"`labels` must be integer class indices of shape \(4,\), one per image, got \(1,\)"),
    clear("evaluate_robustness:loader=[]", lambda env: evaluate_robustness(
        nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), [], ["pgd2"], progress=False), ValueError,
          r"`loader` yielded no image: robust accuracy over nothing is undefined"),
    clear("corrupt:images*255", lambda env: corrupt(XS * 255, "contrast", 1), ValueError,
          r"`images` must lie in \[0, 1\] \(min .*\); divide 8-bit images by 255 first"),
    *[clear(f"robust_accuracy:eps={value!r}", attack(eps=value), ValueError, EPS + f", got {shown}")
      for value, shown in ((-0.1, r"-0\.1\."), (NAN, r"nan\."), ("0.1", r"'0\.1'\."))],
    clear("robust_accuracy:bounds=(1,0)", attack(bounds=(1.0, 0.0)), ValueError,
          r"`bounds` must be \(low, high\) with finite low < high, e\.g\. \(0\.0, 1\.0\), got \(1\.0, 0\.0\)"),
    clear("robust_accuracy:batch_size=0", attack(batch_size=0), ValueError,
          NOT_POSITIVE_INT.format("batch_size") + ", got 0"),
    *[clear(f"AttackSpec.parse:steps={value}", lambda env, s=value: AttackSpec.parse("pgd", steps=s), ValueError,
            STEPS + f", got {value}") for value in (0, -1)],
    clear("AttackSpec.parse:name='pgd0'", lambda env: AttackSpec.parse("pgd0"), ValueError,
          STEPS + r", got 0 in attack='pgd0'; use e\.g\. 'pgd20'"),
    clear("AttackSpec.parse:name=20", lambda env: AttackSpec.parse(20), TypeError,
          r"`attack` must be a name such as 'pgd', 'pgd20', 'pgd50', 'square', 'square<N>', 'apgd_ce<N>' or "
          r"'apgd_dlr<N>', got int 20"),
]

# --- the pytorch-grad-cam bridge ----------------------------------------------------------------------------------


def bridge(method: str, targets: object = None, model: str = "net", layers: bool = True, **call: Any) -> Call:
    """``GradCamBridge.of(method)(model, [layer])(input_tensor=X, targets=targets, **call)``."""
    def run(env: Env) -> object:
        network = env.model(model)
        cam = GradCamBridge.of(method)(network, [network.features[4]] if layers else None)
        return cam(**{"input_tensor": X, "targets": targets, **call})

    return run


BRIDGE_CASES = [
    clear("GradCamBridge(cam):targets=1-for-2-images", bridge("cam", [ClassifierOutputTarget(0)]), ValueError,
          r"`targets` has 1 entries for 2 images; pass one per image"),
    clear("GradCamBridge(cam):targets=segmentation",
          bridge("cam", [SemanticSegmentationTarget(0, np.ones((8, 8)))] * 2), TypeError,
          r"targets \['SemanticSegmentationTarget'\] are .*'cam' explains a class"),
    clear("GradCamBridge(cam):targets=class-5", bridge("cam", [ClassifierOutputTarget(5)] * 2), ValueError,
          OUT_OF_RANGE.format(r"\[5, 5\]")),
    clear("GradCamBridge(cam):eigen_smooth=True", bridge("cam", eigen_smooth=True), ValueError,
          r"`eigen_smooth` is not available for 'cam': it is a projection"),
    clear("GradCamBridge(cam):input_tensor=list", bridge("cam", input_tensor=X.tolist()), TypeError,
          r"`input_tensor` must be a torch\.Tensor of shape \(N, C, H, W\), got list"),
    clear("GradCamBridge(topgap_cam):target_layers=[foreign]",
          lambda env: GradCamBridge.of("topgap_cam")(env.topgap, [torch.nn.Conv2d(1, 1, 1)]), ValueError,
          r"`target_layers` \['Conv2d'\] are not modules of the model; 'topgap_cam' reads the model's own"),
    clear("GradCamBridge(topgap_cam):reshape_transform",
          lambda env: GradCamBridge.of("topgap_cam")(env.topgap, None, reshape_transform=lambda t: t), ValueError,
          r"`reshape_transform` is not used by 'topgap_cam': it reads the model's own class maps"),
]

# --- Captum's per-call options, checked before Captum reads them ---------------------------------------------------

LONG_MASK = torch.arange(64).view(1, 1, 8, 8) // 16
"""Four feature groups of the 8 × 8 images."""
WINDOW = r"`sliding_window_shapes` {} must hold integers ≥ 1 within the image \(3, 8, 8\); pass \(3, h, w\)"

CAPTUM_CASES = [
    clear("feature_ablation.attribute:bogus=1", explain("feature_ablation", bogus=1), ValueError,
          r"'feature_ablation' does not take the option\(s\) \['bogus'\]; it takes \['additional_forward_args', "
          r"'baselines', 'feature_mask'"),
    clear("feature_ablation.attribute:feature_mask=float", explain("feature_ablation", feature_mask=LONG_MASK * 1.5),
          TypeError, r"`feature_mask` must hold integer group indices, got dtype torch\.float32 \(4 distinct values"),
    clear("feature_ablation.attribute:feature_mask=4x4",
          explain("feature_ablation", feature_mask=LONG_MASK[..., :4, :4]), ValueError,
          r"`feature_mask` has shape \(1, 1, 4, 4\) but the images are \(2, 3, 8, 8\); pass \(1, 1, 8, 8\)"),
    clear("feature_ablation.attribute:feature_mask=list", explain("feature_ablation", feature_mask=[[0, 1]]),
          TypeError, r"`feature_mask` must be a tensor of group indices, got list"),
    clear("kernel_shap.attribute:feature_mask=one-group",
          explain("kernel_shap", feature_mask=torch.zeros(1, 1, 8, 8, dtype=torch.long), n_samples=4), ValueError,
          r"`feature_mask` has one group; KernelShap fits a surrogate over the groups and needs two at least"),
    clear("lime.attribute:feature_mask=one-group",
          explain("lime", feature_mask=torch.zeros(1, 1, 8, 8, dtype=torch.long), n_samples=4), ValueError,
          r"`feature_mask` has one group; Lime fits"),
    clear("integrated_gradients.attribute:baselines='zero'", explain("integrated_gradients", baselines="zero", **IG),
          TypeError, r"`baselines` must be a number or a tensor like the images, got 'zero'; pass 0\.0 for black"),
    clear("integrated_gradients.attribute:baselines=nan", explain("integrated_gradients", baselines=NAN, **IG),
          ValueError, r"`baselines` contains NaN or Inf; pass a finite number or tensor"),
    clear("occlusion.attribute:baselines=nan-tensor",
          explain("occlusion", baselines=torch.full((1, 3, 8, 8), NAN)), ValueError, r"`baselines` contains NaN"),
    clear("deep_lift.attribute:baselines=(3,8,8)", explain("deep_lift", baselines=torch.zeros(3, 8, 8)), ValueError,
          r"`baselines` has shape \(3, 8, 8\); pass a number or a tensor of shape \(1, 3, 8, 8\)"),
    *[clear(f"occlusion.attribute:sliding_window_shapes={value!r}", explain("occlusion", sliding_window_shapes=value),
            ValueError, WINDOW.format(re_escape(repr(value)))) for value in ((3, 0, 0), (3, 16, 16), (3, 2.5, 2))],
    clear("occlusion.attribute:sliding_window_shapes=(2,2)", explain("occlusion", sliding_window_shapes=(2, 2)),
          ValueError, r"`sliding_window_shapes` must be a tuple of 3 integers \(C, h, w\), got \(2, 2\)"),
    clear("occlusion.attribute:strides=0", explain("occlusion", strides=0), ValueError,
          r"`strides` must be an integer ≥ 1, got 0\."),
    clear("occlusion.attribute:strides=(3,0,1)", explain("occlusion", strides=(3, 0, 1)), ValueError,
          r"`strides` \(3, 0, 1\) must hold integers ≥ 1"),
    clear("guided_gradcam.attribute:interpolate_mode='bogus'", explain("guided_gradcam", interpolate_mode="bogus"),
          ValueError, r"`interpolate_mode` must be one of \['area', 'bicubic', 'bilinear', 'nearest'"),
]

ERRORS = [*INPUT_CASES, *TARGET_CASES, *OPTION_CASES, *REGISTRY_CASES, *TOPGAP_CASES, *METRIC_CASES,
          *TRAINING_CASES, *DATA_CASES, *ROBUSTNESS_CASES, *BRIDGE_CASES, *CAPTUM_CASES]


@pytest.mark.parametrize(("call", "error", "message"), ERRORS)
def test_bad_input_is_refused_with_a_clear_error(call: Call, error: type[Exception], message: str, env: Env) -> None:
    with pytest.raises(error, match=message):
        call(env)


# --- unusual but valid inputs: the correct result -----------------------------------------------------------------


def predicted(name: str, model: str = "net") -> Call:
    """``name``'s attributions of the class the model predicts, passed explicitly."""
    def call(env: Env) -> object:
        with torch.no_grad():
            logits = copy.deepcopy(env.model(model)).eval()(X)
        return explain(name, target=logits.argmax(1).tolist(), model=model)(env)

    return call


def in_double(env: Env) -> object:
    return captum_topgap.get_method("saliency", copy.deepcopy(env.net).double()).attribute(X.double(), target=0).float()


def one_layer_reff(env: Env) -> object:
    return type(make_objective("reff", env.net, layers=["features.2"])).__name__


MAP = torch.rand(1, 2, 2, 2, generator=torch.Generator().manual_seed(6))

RESULTS = [
    pytest.param(explain("gradcam", target=None), predicted("gradcam"), id="gradcam.attribute:target=None"),
    pytest.param(explain("topgap_cam", target=None, model="topgap"), predicted("topgap_cam", "topgap"),
                 id="topgap_cam.attribute:target=None"),
    pytest.param(explain("saliency", target=np.int64(1)), explain("saliency", target=1),
                 id="saliency.attribute:target=np.int64"),
    pytest.param(explain("gradcam", target=(0, 2)), explain("gradcam", target=[0, 2]),
                 id="gradcam.attribute:target=tuple"),
    pytest.param(explain("gradcam", target=np.array([0, 2])), explain("gradcam", target=[0, 2]),
                 id="gradcam.attribute:target=numpy"),
    pytest.param(explain("gradcam", target=[np.int64(0), np.int64(2)]), explain("gradcam", target=[0, 2]),
                 id="gradcam.attribute:target=list-of-np.int64"),
    pytest.param(explain("gradcam", target=torch.tensor([0, 2], dtype=torch.int32)), explain("gradcam", target=[0, 2]),
                 id="gradcam.attribute:target=int32-tensor"),
    pytest.param(explain("gradcam", target=torch.tensor(1)), explain("gradcam", target=1),
                 id="gradcam.attribute:target=0-D-tensor"),
    pytest.param(explain("integrated_gradients", target=[1], **IG), explain("integrated_gradients", target=1, **IG),
                 id="integrated_gradients.attribute:target=[1]"),
    pytest.param(explain("gradcam", X.clone().requires_grad_()), explain("gradcam"),
                 id="gradcam.attribute:inputs=requires-grad"),
    pytest.param(explain("gradcam", X.contiguous(memory_format=torch.channels_last)), explain("gradcam"),
                 id="gradcam.attribute:inputs=channels-last"),
    pytest.param(explain("rise", (X,), options=RISE), lambda env: (explain("rise", options=RISE)(env),),
                 id="rise.attribute:inputs=1-tuple"),
    pytest.param(in_double, explain("saliency"), id="saliency.attribute:inputs=float64-for-float64-model"),
    pytest.param(explain("integrated_gradients", internal_batch_size=0, **IG), explain("integrated_gradients", **IG),
                 id="integrated_gradients.attribute:internal_batch_size=0"),
    pytest.param(explain("recipro_cam", X[:1, :, :4, :4], options={"chunk_size": 1}),
                 explain("recipro_cam", X[:1, :, :4, :4]),
                 id="recipro_cam:chunk_size=1"),
    pytest.param(lambda env: top_k_pool(MAP, 4), lambda env: MAP.mean((2, 3)), id="top_k_pool:k=H*W"),
    pytest.param(lambda env: top_k_pool(MAP, 1.0), lambda env: MAP.mean((2, 3)), id="top_k_pool:k=1.0"),
    pytest.param(lambda env: metrics.mask_iou(HEAT[:, 0], MASK[:, 0]), lambda env: metrics.mask_iou(HEAT, MASK),
                 id="mask_iou:heatmaps=(N,H,W)"),
    pytest.param(one_layer_reff, lambda env: "ExplanationObjective", id="make_objective:layers=one-layer"),
]


@pytest.mark.parametrize(("call", "reference"), RESULTS)
def test_unusual_but_valid_input_gives_the_correct_result(call: Call, reference: Call, env: Env) -> None:
    result, expected = call(env), reference(env)
    if isinstance(expected, str):
        assert result == expected
    else:
        torch.testing.assert_close(result, expected)


def test_the_cases_are_counted() -> None:
    kinds = [case.id for case in [*ERRORS, *RESULTS]]
    assert len(set(kinds)) == len(kinds), "every case is a distinct (entry point, argument, value)"
    assert len(kinds) >= 150


@pytest.mark.parametrize(("name", "option", "value", "message"), [
    ("ablationcam", "batch_size", 0, r"`batch_size` must be an integer ≥ 1, got 0"),
    ("ablationcam", "batch_size", -1, r"`batch_size` must be an integer ≥ 1, got -1"),
    ("ablationcam", "batch_size", "8", r"`batch_size` must be an integer ≥ 1, got '8' \(str\)"),
    ("ablationcam", "ratio_channels_to_ablate", 0, r"`ratio_channels_to_ablate` must be a finite number > 0 and ≤ 1"),
    ("ablationcam", "ratio_channels_to_ablate", 2.0, r"`ratio_channels_to_ablate` must be .* ≤ 1, got 2.0"),
    ("fem", "k", -1, r"`k` must be a finite number > 0, got -1"),
    ("fem", "k", "x", r"`k` must be a finite number > 0, got 'x'"),
    ("kpca_cam", "kernel", "bogus", r"`kernel` must be one of \['cosine', 'linear', 'poly', 'rbf', 'sigmoid'\]"),
])
def test_grad_cam_options_are_checked_before_grad_cam_runs(name: str, option: str, value: object, message: str,
                                                           tiny_net) -> None:
    """Options grad-cam would misread (ratio 2.0, k = −1) or fail on mid-call are refused at construction."""
    with pytest.raises(ValueError, match=message):
        captum_topgap.get_method(name, tiny_net, **{option: value})



@pytest.mark.parametrize(("name", "options", "message"), [
    ("deep_lift", {"multiply_by_inputs": "no"}, r"`multiply_by_inputs` must be True or False, got 'no'"),
    ("integrated_gradients", {"multiply_by_inputs": 1}, r"`multiply_by_inputs` must be True or False, got 1"),
    ("saliency", {"bogus": 1}, r"Saliency.__init__\(\) got an unexpected keyword argument 'bogus'; it takes"),
    ("integrated_gradients", {"n_step": 5}, r"IntegratedGradients.__init__\(\) got an unexpected keyword argument "
                                            r"'n_step'; it takes \["),
])
def test_captum_constructor_options_are_named(name: str, options: dict, message: str, tiny_net) -> None:
    """Captum would read ``multiply_by_inputs="no"`` as true, and an unknown keyword ends in Python's bare error."""
    with pytest.raises((ValueError, TypeError), match=message):
        captum_topgap.get_method(name, tiny_net, **options)

"""Captum's image attribution methods by name: each Captum class runs under the project's method contract.

``CaptumMethod`` wraps a pixel method (saliency, integrated gradients, …) and ``CaptumLayerMethod`` a
layer method (``LayerGradCam``, ``GuidedGradCam``); both only translate calling conventions — image-friendly
defaults (feature masks, baselines, windows) that the caller's own keyword arguments override, and the
layer given by the contract. The Captum object is built once (a layer method's when its layer is known).

Example:
    >>> import torch, captum_topgap
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> ig = captum_topgap.get_method("integrated_gradients", net)
    >>> ig.attribute(torch.rand(2, 3, 8, 8), target=[0, 1], n_steps=8).shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable
from typing import Any

import torch
from captum import attr
from captum.attr import Attribution
from captum.attr._utils.approximation_methods import SUPPORTED_METHODS
from torch import nn
from torch.utils.hooks import RemovableHandle

from captum_topgap._checks import check_bool, check_choice, check_float, check_int, check_keywords
from captum_topgap.attribution import LAYER_OPTIONS, LayerMethod, MethodAttribution
from captum_topgap.methods import (
    CAM,
    ERF,
    RISE,
    AugmentedGradCAM,
    DifferentiableGradCAM,
    ExpansionCAM,
    PositiveGradCAM,
    ReciproCAM,
    Smoothed,
    TopGAPCAM,
)
from captum_topgap.registry import register_method

__all__ = ["CAM", "ERF", "RISE", "AugmentedGradCAM", "CaptumLayerMethod", "CaptumMethod", "DifferentiableGradCAM",
           "ExpansionCAM", "MethodAttribution", "PositiveGradCAM", "ReciproCAM", "Smoothed", "TopGAPCAM",
           "patch_mask"]
"""This module's Captum wrappers, and — at their first-release import path — this project's own methods
(defined in :mod:`captum_topgap.methods`)."""

Defaults = Callable[[torch.Tensor], dict[str, Any]]


def patch_mask(inputs: torch.Tensor, cells: int = 8) -> torch.Tensor:
    """Feature mask (1, 1, H, W) of a ``cells`` × ``cells`` grid of square patches shared by all channels.

    The default feature groups of the perturbation methods (Captum would otherwise perturb every
    scalar of the image separately). Example:
        >>> patch_mask(torch.zeros(1, 3, 4, 4), cells=2)[0, 0]
        tensor([[0, 0, 1, 1],
                [0, 0, 1, 1],
                [2, 2, 3, 3],
                [2, 2, 3, 3]])
    """
    h, w = inputs.shape[-2:]
    side = max(1, -(-max(h, w) // cells))
    rows = torch.arange(h, device=inputs.device) // side
    cols = torch.arange(w, device=inputs.device) // side
    return (rows[:, None] * (-(-w // side)) + cols[None, :])[None, None]


def _occlusion_defaults(inputs: torch.Tensor) -> dict[str, Any]:
    c, h, w = inputs.shape[1:]
    side = max(1, min(h, w) // 8)
    return {"sliding_window_shapes": (c, side, side), "strides": (c, max(1, side // 2), max(1, side // 2)),
            "perturbations_per_eval": 16}


def _shap_baselines(inputs: torch.Tensor) -> dict[str, Any]:
    zeros = torch.zeros_like(inputs[:1])
    return {"baselines": torch.cat([zeros, torch.full_like(zeros, float(inputs.mean()))])}


def _grouped(inputs: torch.Tensor) -> dict[str, Any]:
    return {"feature_mask": patch_mask(inputs), "perturbations_per_eval": 16}


def _forget_removed_handles(attribution: Attribution) -> None:
    """Empty Captum's lists of already-removed hook handles, which otherwise grow by one per hook per call
    (``backward_hooks`` of GuidedBackprop/Deconvolution, ``forward_handles`` of DeepLift).
    """
    for value in vars(attribution).values():
        if isinstance(value, list) and value and all(isinstance(h, RemovableHandle) for h in value):
            value.clear()
        elif isinstance(value, Attribution):
            _forget_removed_handles(value)


def _baselines(value: object, inputs: torch.Tensor, inner: Attribution) -> object:
    """A finite number, or a finite tensor that broadcasts to the images: (1 or N, C, H, W); the Shap methods
    take a distribution of any number of baselines (K, C, H, W).
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"`baselines` must be a number or a tensor like the images, got {value!r}; pass 0.0 for "
                        "black, or a tensor of shape (1, C, H, W).")
    if not bool(torch.isfinite(torch.as_tensor(value)).all()):
        raise ValueError("`baselines` contains NaN or Inf; pass a finite number or tensor (0.0: black).")
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        n, c, h, w = inputs.shape
        distribution = isinstance(inner, (attr.GradientShap, attr.DeepLiftShap))
        rows_ok = value.dim() == 4 and (distribution or value.shape[0] in (1, n))
        if not rows_ok or tuple(value.shape[1:]) != (c, h, w):
            raise ValueError(f"`baselines` has shape {tuple(value.shape)}; pass a number or a tensor of shape "
                             f"(1, {c}, {h}, {w}) or ({n}, {c}, {h}, {w}) like the images.")
    return value


def _window(value: object, name: str, inputs: torch.Tensor) -> object:
    """``sliding_window_shapes`` / ``strides``: (C, h, w) of integers ≥ 1 within the image (strides: also one
    integer).
    """
    if name == "strides" and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return check_int(value, name, minimum=1)
    shape = tuple(inputs.shape[1:])
    fix = f"pass ({shape[0]}, h, w) with 1 ≤ h ≤ {shape[1]} and 1 ≤ w ≤ {shape[2]}"
    if not isinstance(value, tuple) or len(value) != len(shape):
        raise ValueError(f"`{name}` must be a tuple of {len(shape)} integers (C, h, w), got {value!r}; {fix}.")
    for side, limit in zip(value, shape, strict=True):
        if isinstance(side, bool) or not isinstance(side, numbers.Integral) or not 1 <= int(side) <= limit:
            raise ValueError(f"`{name}` {value!r} must hold integers ≥ 1 within the image {shape}; {fix}.")
    return value


def _feature_mask(value: object, inputs: torch.Tensor, inner: Attribution) -> object:
    """An integer tensor of group indices that broadcasts to the images ((1 or N, 1 or C, H, W)); LIME and
    Kernel SHAP fit a surrogate over the groups, so they need two at least.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`feature_mask` must be a tensor of group indices, got {type(value).__name__}; "
                        "e.g. captum_topgap.adapters.captum.patch_mask(inputs).")
    if value.is_floating_point() or value.dtype == torch.bool:
        raise TypeError(f"`feature_mask` must hold integer group indices, got dtype {value.dtype} "
                        f"({value.unique().numel()} distinct values would be as many groups); pass mask.long().")
    n, c, h, w = inputs.shape
    if value.dim() != 4 or value.shape[0] not in (1, n) or value.shape[1] not in (1, c) or value.shape[2:] != (h, w):
        raise ValueError(f"`feature_mask` has shape {tuple(value.shape)} but the images are {tuple(inputs.shape)}; "
                         f"pass (1, 1, {h}, {w}) (resize a coarse mask with nearest interpolation).")
    if isinstance(inner, (attr.Lime, attr.KernelShap)) and value.unique().numel() < 2:
        raise ValueError(f"`feature_mask` has one group; {type(inner).__name__} fits a surrogate over the groups "
                         "and needs two at least (the default is an 8 × 8 grid of patches).")
    return value


def _check_coalitions(inner: Attribution, feature_mask: object, inputs: torch.Tensor) -> None:
    """Kernel SHAP samples coalitions of one to all-but-one group, so the default grid of a 1 × 1 image (one
    patch) leaves it none (Captum would fail with a NaN ``Categorical``): refused, naming ``feature_mask`` and
    the fix. A ``feature_mask`` the caller gives is checked by :func:`_feature_mask` instead.

    Example:
        >>> _check_coalitions(attr.KernelShap(torch.nn.Flatten()), torch.zeros(1, 1, 1, 1), torch.zeros(1, 3, 1, 1))
        Traceback (most recent call last):
        ...
        ValueError: `feature_mask`: the default 8 × 8 grid of patches is one patch on 1 × 1 images; ...
    """
    if isinstance(inner, attr.KernelShap) and isinstance(feature_mask, torch.Tensor) \
            and feature_mask.unique().numel() < 2:
        h, w = inputs.shape[-2:]
        raise ValueError(f"`feature_mask`: the default 8 × 8 grid of patches is one patch on {h} × {w} images; "
                         "Kernel SHAP needs two groups at least: pass feature_mask=torch.arange(C).view(1, C, 1, 1) "
                         "(one group per channel), or use 'feature_ablation' or 'shapley_value_sampling', which are "
                         "exact for one group.")


INTERPOLATION = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
"""The modes ``torch.nn.functional.interpolate`` takes for images (GuidedGradCam's ``interpolate_mode``)."""

CAPTUM_OPTIONS: dict[str, Callable[[object, torch.Tensor, Attribution], object]] = {
    "n_steps": lambda v, *_: check_int(v, "n_steps", minimum=1),
    "n_samples": lambda v, *_: check_int(v, "n_samples", minimum=1),
    "perturbations_per_eval": lambda v, *_: check_int(v, "perturbations_per_eval", minimum=1),
    "internal_batch_size": lambda v, *_: None if v is None else check_int(v, "internal_batch_size", minimum=0),
    "method": lambda v, *_: check_choice(v, "method", SUPPORTED_METHODS),
    "abs": lambda v, *_: check_bool(v, "abs"),
    "relu_attributions": lambda v, *_: check_bool(v, "relu_attributions"),
    "stdevs": lambda v, *_: check_float(v, "stdevs", minimum=0.0),
    "interpolate_mode": lambda v, *_: check_choice(v, "interpolate_mode", INTERPOLATION),
    "sliding_window_shapes": lambda v, inputs, _: _window(v, "sliding_window_shapes", inputs),
    "strides": lambda v, inputs, _: _window(v, "strides", inputs),
    "baselines": _baselines,
    "feature_mask": _feature_mask,
}
"""Captum's per-call options that are checked here, so a bad value is named before Captum fails deep inside
(or, for a float ``feature_mask`` or ``strides=0``, returns a wrong map)."""


@functools.cache
def attribute_options(captum_class: type[Attribution]) -> frozenset[str]:
    """The per-call options of a Captum class: its ``attribute``'s named parameters (``FeatureAblation``'s
    ``**kwargs`` serve only its subclasses, so an unknown keyword is refused rather than ignored). Read once
    per class: every call checks its options against them, and ``inspect.signature`` costs 80 µs a call.

    Example:
        >>> sorted(attribute_options(attr.Saliency))
        ['abs', 'additional_forward_args']
    """
    parameters = list(inspect.signature(captum_class.attribute).parameters.values())
    return frozenset(p.name for p in parameters if p.name not in ("self", "inputs", "target")
                     and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL))


INIT_OPTIONS: dict[str, Callable[[object, str], object]] = {
    "multiply_by_inputs": check_bool,
}
"""Captum constructor options checked here (Captum reads ``multiply_by_inputs="no"`` as true)."""


CAPTUM_FILLED = {"forward_func": "model", "model": "model", "layer": "layer"}
"""The Captum constructor's arguments the adapters fill themselves (``captum_class(model)``, layer classes
``captum_class(model, layer)``; the first is ``forward_func`` or ``model`` by class), each with the argument
of ``get_method`` it comes from: not options a user can pass."""


def _checked_init(captum_class: type, init_kwargs: dict[str, Any], also: tuple[str, ...] = ()) -> dict[str, Any]:
    """``init_kwargs`` of ``captum_class`` with unknown keywords refused by name (listing ``also``, the
    adapter's own options, beside the class's) and known options checked.
    """
    check_keywords(captum_class, init_kwargs, f"{captum_class.__name__}.__init__()", filled=CAPTUM_FILLED,
                   also=also)
    return {name: INIT_OPTIONS[name](value, name) if name in INIT_OPTIONS else value
            for name, value in init_kwargs.items()}


def _run(inner: Attribution, inputs: torch.Tensor, labels: torch.Tensor, defaults: Defaults | None,
         options: dict[str, Any]) -> torch.Tensor:
    options = {name: CAPTUM_OPTIONS[name](value, inputs, inner) if name in CAPTUM_OPTIONS else value
               for name, value in options.items()}
    options = {**(defaults(inputs) if defaults else {}), **options}
    _check_coalitions(inner, options.get("feature_mask"), inputs)
    try:
        return inner.attribute(inputs, target=labels, **options)
    except RuntimeError as error:
        if inputs.dtype in (torch.float16, torch.bfloat16) and "type" in str(error):
            raise TypeError(f"Captum's {type(inner).__name__} mixes float32 tensors into {inputs.dtype} inputs "
                            f"({str(error).splitlines()[0][:80]}); pass float32 inputs and model.") from error
        raise
    finally:
        _forget_removed_handles(inner)


def _detached(result: Any) -> Any:
    """Captum's result without graph: attributions, or (attributions, convergence delta)."""
    return tuple(part.detach() for part in result) if isinstance(result, tuple) else result.detach()


class CaptumMethod(MethodAttribution):
    """A Captum pixel attribution class run under the contract; returns input-shaped attributions (and the
    convergence delta when asked with ``return_convergence_delta=True``). ``additional_forward_args`` go to
    Captum, which passes them to the model.
    """

    native_forward_args = True

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, *, captum_class: type, name: str,
                 defaults: Defaults | None = None, **init_kwargs: Any) -> None:
        self.method_name = name
        super().__init__(model, layer)
        self.inner, self.defaults = captum_class(model, **_checked_init(captum_class, init_kwargs)), defaults

    def _attribute(self, inputs: torch.Tensor, labels: torch.Tensor, **options: Any) -> Any:
        return _detached(_run(self.inner, inputs, labels, self.defaults, options))

    def has_convergence_delta(self) -> bool:
        """Whether the Captum method can return a convergence delta."""
        return self.inner.has_convergence_delta()

    def accepted_options(self) -> frozenset[str] | None:
        """The Captum class's own per-call options (:func:`attribute_options`)."""
        return attribute_options(self.inner.__class__)


class CaptumLayerMethod(LayerMethod):
    """A Captum layer attribution class over the contract's layer; CAM outputs (``cam=True``) are summed over
    channels to (N, 1, h, w) and upsampled by the contract. Captum cannot reshape a transformer's tokens, so
    ``reshape_transform`` is refused (use ``gradcam``).
    """

    native_forward_args = True
    supports_reshape = False

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, *, captum_class: type, name: str,
                 cam: bool = False, defaults: Defaults | None = None, upsample: bool = True,
                 input_size: tuple[int, int, int] | None = None,
                 reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None, **init_kwargs: Any) -> None:
        self.method_name = name
        super().__init__(model, layer, upsample, input_size, reshape_transform)
        init_kwargs = _checked_init(captum_class, init_kwargs, tuple(set(LAYER_OPTIONS) - {"reshape_transform"}))
        self.captum_class, self.cam, self.defaults, self.init_kwargs = captum_class, cam, defaults, init_kwargs
        self._inner: Attribution | None = None

    def accepted_options(self) -> frozenset[str] | None:
        """The Captum class's own per-call options (:func:`attribute_options`)."""
        return attribute_options(self.captum_class)

    def core(self, inputs: torch.Tensor, labels: torch.Tensor, **options: Any) -> torch.Tensor:
        """The Captum method's attributions at the layer (summed over channels for a CAM)."""
        if self._inner is None:
            self._inner = self.captum_class(self.model, self.layer, **self.init_kwargs)
        out = _run(self._inner, inputs, labels, self.defaults, options)
        return (out.sum(dim=1, keepdim=True) if self.cam and out.shape[1] != 1 else out).detach()


def _register(name: str, captum_class: type, description: str, *, layered: bool = False, cam: bool = False,
              defaults: Defaults | None = None, attribute_defaults: dict[str, Any] | None = None,
              aliases: tuple[str, ...] = ()) -> None:
    def merged(inputs: torch.Tensor) -> dict[str, Any]:
        return {**(attribute_defaults or {}), **(defaults(inputs) if defaults else {})}

    def factory(model: nn.Module, layer: nn.Module | str | None = None, **kwargs: Any) -> MethodAttribution:
        if layered:
            return CaptumLayerMethod(model, layer, captum_class=captum_class, name=name, cam=cam, defaults=merged,
                                     **kwargs)
        return CaptumMethod(model, layer, captum_class=captum_class, name=name, defaults=merged, **kwargs)

    factory.__doc__ = description
    register_method(name, origin="captum", description=description, kind="layer" if layered else "pixel",
                    aliases=aliases)(factory)


_register("saliency", attr.Saliency, "absolute input gradient |∂y_c/∂x| (Simonyan et al.)",
          aliases=("vanilla_gradient",))
_register("integrated_gradients", attr.IntegratedGradients,
          "path integral of gradients from a zero baseline (Sundararajan et al.)", aliases=("ig",))
_register("input_x_gradient", attr.InputXGradient, "input ⊙ gradient", aliases=("gradient_x_input",))
_register("guided_backprop", attr.GuidedBackprop, "gradients with ReLU back-pass clipped (Springenberg et al.)")
_register("deconvolution", attr.Deconvolution, "deconvnet back-projection (Zeiler & Fergus)")
_register("gradient_shap", attr.GradientShap,
          "expected gradients over noisy interpolations to black and mean-grey baselines",
          defaults=_shap_baselines)
_register("deep_lift", attr.DeepLift, "DeepLIFT rescale rule against a zero baseline")
_register("deep_lift_shap", attr.DeepLiftShap, "DeepLIFT averaged over black and mean-grey baselines",
          defaults=_shap_baselines)
_register("occlusion", attr.Occlusion, "score drop when sliding an occluding patch (H/8 window)",
          defaults=_occlusion_defaults)
_register("feature_ablation", attr.FeatureAblation, "score drop when ablating each patch of an 8×8 grid",
          defaults=_grouped)
_register("shapley_value_sampling", attr.ShapleyValueSampling,
          "sampled Shapley values of the patches of an 8×8 grid", defaults=_grouped)
_register("lime", attr.Lime, "LIME surrogate over the patches of an 8×8 grid", defaults=_grouped)
_register("kernel_shap", attr.KernelShap, "Kernel SHAP over the patches of an 8×8 grid", defaults=_grouped)
_register("layer_gradcam", attr.LayerGradCam,
          "Captum's LayerGradCam (ReLU on), summed and upsampled to the input", layered=True, cam=True,
          attribute_defaults={"relu_attributions": True}, aliases=("captum_gradcam",))
_register("guided_gradcam", attr.GuidedGradCam, "guided backprop ⊙ upsampled Grad-CAM (Selvaraju et al.)",
          layered=True)

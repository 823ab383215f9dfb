"""Captum side of the plugin: the base :class:`MethodAttribution` and every Captum image method by name.

Every registered method is a :class:`captum.attr.Attribution` whose ``attribute(inputs, target=...)``
validates its input, runs inside :func:`captum_topgap._state.preserved_state` (eval mode, exact model
state restored, no hook left) and returns a float tensor. Pixel methods return input-shaped tensors;
CAM-type methods return (N, 1, H, W) at input resolution (``upsample=False``: layer resolution).

``target`` may be an int, a list or a (N,) tensor of class indices, or ``None`` for the predicted class.

Example:
    >>> import torch, captum_topgap
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> ig = captum_topgap.get_method("integrated_gradients", net)
    >>> ig.attribute(torch.rand(2, 3, 8, 8), target=[0, 1], n_steps=8).shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from captum import attr
from captum.attr import Attribution
from captum.log import log_usage
from torch import nn
from torch.utils.hooks import RemovableHandle

from captum_topgap._checks import TargetType, check_images, check_target
from captum_topgap._layers import check_spatial_layer, default_layer, example_input, resolve_layer
from captum_topgap._state import preserved_state
from captum_topgap.methods.augmented import augmented_cam
from captum_topgap.methods.cam import class_activation_map
from captum_topgap.methods.erf import erf
from captum_topgap.methods.expansion_cam import expansion_cams
from captum_topgap.methods.gradcam import grad_cam_maps
from captum_topgap.methods.recipro import recipro_cam
from captum_topgap.methods.rise import rise
from captum_topgap.methods.topgap_cam import topgap_cam
from captum_topgap.models.expansion import ExpansionNet
from captum_topgap.registry import method_spec, register_method


class MethodAttribution(Attribution):
    """Base of every registered method: validation, targets and the model-state contract.

    ``attribute`` carries Captum's ``log_usage`` decorator like Captum's own methods, so Captum wrappers
    that call ``attribute.__wrapped__`` (``NoiseTunnel``) accept every registered method.

    Subclasses implement ``_attribute(inputs, target, **kwargs)`` where ``target`` is a checked (N,)
    long tensor. Layer methods (``needs_layer = True``) resolve ``layer`` (module or dotted name; ``None``
    picks the last module with a spatial output) and expose ``.layer`` and ``.layer_name``.
    """

    needs_layer = False
    method_name = "method"

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None,
                 input_size: tuple[int, int, int] | None = None) -> None:
        super().__init__(model)
        self.model = model
        self.layer: nn.Module | None = None
        self.layer_name: str | None = None
        self._num_classes: int | None = None
        if self.needs_layer:
            example = example_input(model, input_size)
            if layer is None:
                self.layer_name, self.layer = default_layer(model, example)
            else:
                self.layer = resolve_layer(model, layer)
                check_spatial_layer(model, self.layer, example)
                self.layer_name = next(n for n, m in model.named_modules() if m is self.layer)
        elif layer is not None:
            raise ValueError(f"`layer` is not used by the pixel method {self.method_name!r}; leave it None.")

    @log_usage()
    def attribute(self, inputs: torch.Tensor, target: TargetType = None, **kwargs: Any) -> torch.Tensor:
        """Attributions of ``target`` (class indices; ``None`` = predicted class) for ``inputs`` (N, C, H, W).

        Gradients are enabled inside, so a caller's ``torch.no_grad()`` (NoiseTunnel's) does not break
        gradient methods."""
        inputs = check_images(inputs, self.model)
        with preserved_state(self.model), torch.enable_grad():
            labels = self._labels(inputs, target)
            return self._attribute(inputs, labels, **kwargs)

    def _labels(self, inputs: torch.Tensor, target: TargetType) -> torch.Tensor:
        with torch.no_grad():
            if target is None:
                return self._logits(inputs).argmax(dim=1)
            if self._num_classes is None:
                self._num_classes = self._logits(inputs[:1]).shape[1]
        return check_target(target, inputs.shape[0], self._num_classes).to(inputs.device)

    def _logits(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.model(inputs)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model must return class scores of shape (N, classes), got {shape}; "
                             "wrap it so that forward returns logits.")
        return out

    def _attribute(self, inputs: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError


def upsample_to(maps: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of (N, 1, h, w) maps to the inputs' H × W (half-pixel centres, as OpenCV).

    Example:
        >>> upsample_to(torch.ones(1, 1, 2, 2), torch.zeros(1, 3, 8, 8)).shape
        torch.Size([1, 1, 8, 8])
    """
    return F.interpolate(maps, size=inputs.shape[-2:], mode="bilinear", align_corners=False)


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


class CaptumMethod(MethodAttribution):
    """A Captum attribution class run under the plugin's contract, with image-friendly defaults.

    ``defaults(inputs)`` gives keyword arguments (feature masks, baselines, windows) that the caller's own
    keyword arguments override. Layer-CAM classes (``cam=True``) return (N, 1, H, W), upsampled
    bilinearly to the input unless ``upsample=False``.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, *, captum_class: type,
                 name: str, needs_layer: bool = False, cam: bool = False,
                 defaults: Callable[[torch.Tensor], dict[str, Any]] | None = None,
                 upsample: bool = True, input_size: tuple[int, int, int] | None = None,
                 **init_kwargs: Any) -> None:
        self.needs_layer, self.method_name = needs_layer, name
        super().__init__(model, layer, input_size)
        self.inner = captum_class(model, self.layer, **init_kwargs) if needs_layer else captum_class(
            model, **init_kwargs)
        self.cam, self.upsample, self.defaults = cam, upsample, defaults

    def _attribute(self, inputs: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        options = {**(self.defaults(inputs) if self.defaults else {}), **kwargs}
        try:
            out = self.inner.attribute(inputs, target=target, **options)
        finally:
            _forget_removed_handles(self.inner)
        if self.cam:
            out = out.sum(dim=1, keepdim=True) if out.shape[1] != 1 else out
            out = upsample_to(out, inputs) if self.upsample else out
        return out.detach()

    def has_convergence_delta(self) -> bool:
        return self.inner.has_convergence_delta()


def _forget_removed_handles(attribution: Attribution) -> None:
    """Empty Captum's lists of already-removed hook handles, which otherwise grow by one per hook per call
    (``backward_hooks`` of GuidedBackprop/Deconvolution, ``forward_handles`` of DeepLift)."""
    for value in vars(attribution).values():
        if isinstance(value, list) and value and all(isinstance(h, RemovableHandle) for h in value):
            value.clear()
        elif isinstance(value, Attribution):
            _forget_removed_handles(value)


def _register(name: str, captum_class: type, description: str, *, needs_layer: bool = False,
              cam: bool = False, defaults: Callable[[torch.Tensor], dict[str, Any]] | None = None,
              attribute_defaults: dict[str, Any] | None = None, aliases: tuple[str, ...] = ()) -> None:
    def merged(inputs: torch.Tensor) -> dict[str, Any]:
        return {**(attribute_defaults or {}), **(defaults(inputs) if defaults else {})}

    def factory(model: nn.Module, layer: nn.Module | str | None = None, **kwargs: Any) -> CaptumMethod:
        return CaptumMethod(model, layer, captum_class=captum_class, name=name, needs_layer=needs_layer,
                            cam=cam, defaults=merged, **kwargs)

    factory.__doc__ = description
    register_method(name, origin="captum", description=description,
                    kind="layer" if needs_layer else "pixel", aliases=aliases)(factory)


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
          "Captum's LayerGradCam (ReLU on), summed and upsampled to the input", needs_layer=True, cam=True,
          attribute_defaults={"relu_attributions": True}, aliases=("captum_gradcam",))
_register("guided_gradcam", attr.GuidedGradCam, "guided backprop ⊙ upsampled Grad-CAM (Selvaraju et al.)",
          needs_layer=True)


class TopGAPCAM(MethodAttribution):
    """Top-GAP class maps as a Captum attribution: (N, 1, H, W), raw CAM values, one forward, no backward.

    Args:
        model: a Top-GAP network (``timm.create_model("topgap_resnet18", ...)``).
        upsample: bilinear resize to the input (``False``: the CAM's resolution).

    Example:
        >>> import timm
        >>> model = timm.create_model("topgap_resnet18", num_classes=4, k=16)
        >>> TopGAPCAM(model).attribute(torch.rand(2, 3, 64, 64), target=[1, 3]).shape
        torch.Size([2, 1, 64, 64])
    """

    method_name = "topgap_cam"

    def __init__(self, model: nn.Module, layer: None = None, upsample: bool = True) -> None:
        if layer is not None:
            raise ValueError("`layer` is not used by 'topgap_cam': it reads the model's own class maps; leave it None.")
        super().__init__(model)
        self.upsample = upsample

    @log_usage()
    def attribute(self, inputs: torch.Tensor, target: TargetType = None, **kwargs: Any) -> torch.Tensor:
        """Class maps of ``target`` (``None``: predicted class) from one forward pass."""
        inputs = check_images(inputs, self.model)
        with preserved_state(self.model):
            return topgap_cam(self.model, inputs, target, self.upsample)[1]


register_method("topgap_cam", origin="captum-topgap", kind="model",
                description="Top-GAP class map of a Top-GAP model: one forward, no backward (Nieradzik et al.)")(
    TopGAPCAM)


class ExpansionCAM(MethodAttribution):
    """Expansion CAM (the High-Resolution CAM framework of seed 001, not grad-cam's ``HiResCAM``).

    Args:
        model: the localisation network (GAP + FC), or an :class:`~captum_topgap.models.ExpansionNet`.
        expansion: the trained ``ExpansionNet`` over ``model`` (not needed when ``model`` is one).
        output: ``"refined"`` (default), ``"high"`` or ``"low"`` (the upsampled low-res CAM).
        refine_options: ``blur_size``, ``roi_percentile``, ``bound_percentiles``, ``n_seeds``, ``hole_area``,
            ``weight`` of :func:`captum_topgap.methods.expansion_cam.refine`.

    Example:
        >>> import timm
        >>> from captum_topgap.models import ExpansionNet
        >>> localizer = timm.create_model("resnet18", num_classes=3)
        >>> cam = ExpansionCAM(localizer, ExpansionNet(localizer), hole_area=16)
        >>> cam.attribute(torch.rand(2, 3, 32, 32), target=[0, 2]).shape
        torch.Size([2, 1, 32, 32])
        >>> sorted(cam.attribute_all(torch.rand(1, 3, 32, 32), target=1))
        ['high', 'low', 'refined']
    """

    method_name = "expansion_cam"
    outputs = ("refined", "high", "low")

    def __init__(self, model: nn.Module, expansion: ExpansionNet | None = None, layer: None = None,
                 output: str = "refined", upsample: bool = True, **refine_options: Any) -> None:
        if layer is not None:
            raise ValueError("`layer` is not used by 'expansion_cam': it reads the expansion network; leave it None.")
        expansion = model if isinstance(model, ExpansionNet) else expansion
        if not isinstance(expansion, ExpansionNet) or (expansion is not model and expansion.localizer is not model):
            raise ValueError("'expansion_cam' needs `expansion=`: an ExpansionNet built over this model (train one "
                             "with `captum-topgap train --method expansion --localizer CKPT`), or pass the "
                             "ExpansionNet itself as the model.")
        if output not in self.outputs:
            raise ValueError(f"`output` must be one of {self.outputs}, got {output!r}")
        super().__init__(expansion)
        self.output, self.refine_options = output, refine_options

    def attribute_all(self, inputs: torch.Tensor, target: TargetType = None) -> dict[str, torch.Tensor]:
        """``{"low", "high", "refined"}`` maps (N, 1, H, W) of ``target`` from one pass."""
        inputs = check_images(inputs, self.model)
        with preserved_state(self.model):
            return expansion_cams(self.model, inputs, self._labels(inputs, target), **self.refine_options)

    @log_usage()
    def attribute(self, inputs: torch.Tensor, target: TargetType = None, **kwargs: Any) -> torch.Tensor:
        """The ``output`` map of ``target`` (``None``: predicted class)."""
        return self.attribute_all(inputs, target)[kwargs.get("output", self.output)]


register_method("expansion_cam", origin="captum-topgap", kind="model", aliases=("high_resolution_cam",),
                description="Expansion (High-Resolution) CAM: expansion network + refinement (Tagaris et al.)")(
    ExpansionCAM)


class LayerCoreMethod(MethodAttribution):
    """Base of the plugin's layer methods: a torch-native core gives (N, 1, h, w) maps at the layer's
    resolution (detached, unless the core is asked to keep its graph); the result is upsampled bilinearly
    to the input unless ``upsample=False``."""

    needs_layer = True

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, upsample: bool = True,
                 input_size: tuple[int, int, int] | None = None) -> None:
        super().__init__(model, layer, input_size)
        self.upsample = upsample

    def _attribute(self, inputs: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        maps = self.core(inputs, target, **kwargs)
        return upsample_to(maps, inputs) if self.upsample and maps.shape[-2:] != inputs.shape[-2:] else maps

    def core(self, inputs: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError


class CAM(LayerCoreMethod):
    """Class Activation Mapping for GAP+FC networks: M_c = Σ_k w_k^c f_k (:mod:`captum_topgap.methods.cam`).

    Example:
        >>> import timm
        >>> CAM(timm.create_model("resnet18", num_classes=3)).attribute(torch.rand(1, 3, 64, 64), target=2).shape
        torch.Size([1, 1, 64, 64])
    """

    method_name = "cam"

    def core(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return class_activation_map(self.model, self.layer, inputs, target)


class ReciproCAM(LayerCoreMethod):
    """Recipro-CAM: softmax score of the target with the layer output masked to one position at a time.

    Args: ``gaussian`` (3 × 3 Gaussian neighbourhood), ``chunk_size`` (largest batch the network tail sees).
    See :mod:`captum_topgap.methods.recipro`.
    """

    method_name = "recipro_cam"

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, gaussian: bool = False,
                 chunk_size: int = 256, upsample: bool = True,
                 input_size: tuple[int, int, int] | None = None) -> None:
        super().__init__(model, layer, upsample, input_size)
        self.gaussian, self.chunk_size = gaussian, chunk_size

    def core(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return recipro_cam(self.model, self.layer, inputs, target, self.gaussian, self.chunk_size)


class AugmentedGradCAM(LayerCoreMethod):
    """Augmented Grad-CAM: super-resolved maps from ``n_augmentations`` roto-translated copies, over any
    registered layer method ``base`` (``"gradcam"``, ``"gradcam++"``, ``"layer_gradcam"``, …).

    Keyword arguments of :func:`captum_topgap.methods.augmented.augmented_cam` (``n_augmentations``,
    ``max_rotation``, ``max_shift``, ``lambda_tv``, ``mu``, ``solver``, ``iterations``, ``registration``,
    ``batch_size``, ``seed``) are set here or per call. Output: (N, 1, H, W) at input resolution (the
    super-resolved map is born there, so ``upsample`` changes nothing).
    """

    method_name = "augmented_gradcam"

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, base: str = "gradcam",
                 upsample: bool = True, input_size: tuple[int, int, int] | None = None, **options: Any) -> None:
        super().__init__(model, layer, upsample, input_size)
        spec = method_spec(base)
        if spec.kind != "layer" or spec.name in ("guided_gradcam", "augmented_gradcam"):
            raise ValueError(f"`base` must be a registered layer CAM such as 'gradcam' or 'gradcam++', got {base!r}.")
        self.base = spec.load()(model, self.layer, upsample=False)
        self.options = options

    def core(self, inputs: torch.Tensor, target: torch.Tensor, **options: Any) -> torch.Tensor:
        def base(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return self.base.attribute(images, target=labels)

        return augmented_cam(base, inputs, target, **{**self.options, **options})


class DifferentiableGradCAM(LayerCoreMethod):
    """Grad-CAM from the plugin's torch-native core (:mod:`captum_topgap.methods.gradcam`): the core ReFF
    trains through. ``attribute(..., create_graph=True)`` keeps the graph for a loss on the maps."""

    method_name = "differentiable_gradcam"

    def core(self, inputs: torch.Tensor, target: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        return grad_cam_maps(self.model, inputs, target, [self.layer], create_graph, upsample=False)[1][0]


class PositiveGradCAM(DifferentiableGradCAM):
    """Grad-CAM with positive-gradient channel weights, α_k = mean_{i,j} ReLU(∂y_c/∂A_k(i, j)) (the
    lecture's "sharpen focus"): the Grad-CAM core with ``weighting="positive"``, not a copy.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> PositiveGradCAM(net).attribute(torch.rand(1, 3, 8, 8), target=1).shape
        torch.Size([1, 1, 8, 8])
    """

    method_name = "positive_gradcam"

    def core(self, inputs: torch.Tensor, target: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        return grad_cam_maps(self.model, inputs, target, [self.layer], create_graph, upsample=False,
                             weighting="positive")[1][0]


class RISE(MethodAttribution):
    """RISE (Petsiuk et al., 2018): saliency = Σ_m P(c | x ⊙ M_m) · M_m / (N · p) over random masks M_m.

    Args: ``n_masks``, ``p`` (keep probability), ``cell_size`` (pixels per low-resolution cell),
    ``batch_size`` (masked copies per forward), ``seed`` (the masks are generated once per input size
    and seed and reused). Output (N, 1, H, W). See :mod:`captum_topgap.methods.rise`.
    """

    method_name = "rise"

    def __init__(self, model: nn.Module, layer: None = None, n_masks: int = 1000, p: float = 0.5,
                 cell_size: int = 8, batch_size: int = 100, seed: int = 0) -> None:
        super().__init__(model, layer)
        self.options = {"n_masks": n_masks, "p": p, "cell_size": cell_size, "batch_size": batch_size, "seed": seed}

    def _attribute(self, inputs: torch.Tensor, target: torch.Tensor, **options: Any) -> torch.Tensor:
        return rise(self.model, inputs, target, **{**self.options, **options})


class Smoothed(Attribution):
    """``"smooth:NAME"``: Captum's ``NoiseTunnel`` (SmoothGrad) over any registered method — e.g.
    ``"smooth:gradcam++"`` is Smooth Grad-CAM++ — the mean of NAME's attributions over ``nt_samples``
    copies of the input with Gaussian noise of standard deviation ``stdevs``.

    ``target=None`` explains the class predicted on the clean input (not on each noisy copy).

    Example:
        >>> import captum_topgap
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> smooth = captum_topgap.get_method("smooth:gradcam++", net, nt_samples=4, stdevs=0.1)
        >>> smooth.attribute(torch.rand(2, 3, 8, 8), target=[0, 1]).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, method: MethodAttribution, nt_samples: int = 16, stdevs: float = 0.15,
                 nt_samples_batch_size: int | None = None) -> None:
        super().__init__(method.model)
        self.model, self.method, self.tunnel = method.model, method, attr.NoiseTunnel(method)
        self.layer, self.layer_name = getattr(method, "layer", None), getattr(method, "layer_name", None)
        self.options = {"nt_samples": nt_samples, "stdevs": stdevs, "nt_samples_batch_size": nt_samples_batch_size}

    @log_usage()
    def attribute(self, inputs: torch.Tensor, target: TargetType = None, **kwargs: Any) -> torch.Tensor:
        """Mean of the method's attributions over noisy copies; ``nt_samples``/``stdevs`` may be overridden."""
        inputs = check_images(inputs, self.model)
        with preserved_state(self.model):
            labels = self.method._labels(inputs, target)
        options = {**self.options, **{k: kwargs.pop(k) for k in list(kwargs) if k in self.options}}
        return self.tunnel.attribute(inputs, nt_type="smoothgrad", target=labels, **options, **kwargs)


class ERF(MethodAttribution):
    """Effective receptive field of the target logit: Σ_c |∂y/∂x_c| as (N, 1, H, W) (see methods/erf.py)."""

    method_name = "erf"

    def _attribute(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return erf(self.model, inputs, target)


register_method("cam", origin="captum-topgap", kind="layer",
                description="CAM: classifier weights × last feature maps of a GAP+FC network (Zhou et al.)")(CAM)
register_method("recipro_cam", origin="captum-topgap", kind="layer",
                description="Recipro-CAM: gradient-free, target score with the layer masked to each position")(
    ReciproCAM)
register_method("augmented_gradcam", origin="captum-topgap", kind="layer", aliases=("augmented_grad_cam",),
                description="Augmented Grad-CAM: super-resolution from augmented copies (Morbidelli et al.)")(
    AugmentedGradCAM)
register_method("differentiable_gradcam", origin="captum-topgap", kind="layer",
                description="torch-native Grad-CAM that can keep its graph (the core ReFF trains through)")(
    DifferentiableGradCAM)
register_method("positive_gradcam", origin="captum-topgap", kind="layer", aliases=("sharpened_gradcam",),
                description="Grad-CAM weighted by the mean positive gradient (the lecture's sharpened focus)")(
    PositiveGradCAM)
register_method("rise", origin="captum-topgap", kind="pixel",
                description="RISE: class probability under random upsampled binary masks (Petsiuk et al.)")(RISE)
register_method("erf", origin="captum-topgap", kind="pixel",
                description="effective receptive field Σ_c |∂y/∂x_c| of the target logit")(ERF)

"""pytorch-grad-cam both ways: its CAM classes by name in the registry, and every registered CAM as a grad-cam class.

- :class:`GradCamMethod`: a pytorch-grad-cam class (``GradCAM``, ``ScoreCAM``, …) under the project's
  method contract — one ``ClassifierOutputTarget`` per image, the result a float tensor (N, 1, H, W) equal
  to the grad-cam class's own output (resized to the input by grad-cam, then min-max scaled per image: each
  maximum is exactly 1), or grad-cam's map at the layer's resolution, scaled there, with ``upsample=False``.
- :class:`GradCamBridge`: the one bridge the other way — any registered layer or model CAM (this
  project's ``cam``, ``recipro_cam``, ``topgap_cam``, …) called the way grad-cam users call grad-cam:
  ``with Bridge(model, target_layers) as cam: cam(input_tensor=x, targets=[...])`` -> numpy (N, H, W) in
  [0, 1]. ``TopGAPCAM``, ``CAM``, ``ReciproCAM``, ``DifferentiableGradCAM``, ``ExpansionCAM`` and
  ``AugmentedGradCAM`` are its specialisations (``GradCamBridge.of(name)``), not classes of their own.

Example:
    >>> import torch, captum_topgap
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> cam = captum_topgap.get_method("gradcam++", net)
    >>> cam.layer_name, cam.attribute(torch.rand(2, 3, 8, 8), target=[1, 0]).shape
    ('1', torch.Size([2, 1, 8, 8]))
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_grad_cam as gc
import torch
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    FasterRCNNBoxScoreTarget,
    SemanticSegmentationTarget,
)
from torch import nn

from captum_topgap._checks import check_bool, check_choice, check_float, check_images, check_int, check_keywords
from captum_topgap._state import preserved_state
from captum_topgap.attribution import LAYER_OPTIONS, LayerMethod, MethodAttribution, class_scores, model_lock
from captum_topgap.registry import method_spec, register_method


class GradCamMethod(LayerMethod):
    """A pytorch-grad-cam class (``cam_class``) over the contract's layer, called the way grad-cam users call it.

    ``reshape_transform`` goes to the grad-cam class (a timm ViT's default layer gets the reshape of its
    tokens); other constructor keyword arguments (``batch_size`` of AblationCAM, ``k`` of FEM, …) too.
    ``attribute`` honours grad-cam's ``aug_smooth`` and ``eigen_smooth``. For the call the parameters are
    frozen and the input made to require gradients (grad-cam's ``compute_input_gradient``): the layer still
    gets its gradient ∂y^c/∂A^k — the same maps — but the backward no longer computes the weight gradients that
    grad-cam's own call accumulates into every ``.grad`` (11 M for a resnet18), which the CAM never reads. The
    ``requires_grad`` flags come back with the method contract's ``preserved_state``, also on errors. Classes
    that differentiate the gradient again (``detach=False``: ShapleyCAM's Hessian-vector product) get every
    parameter made to require gradients instead: the second derivative runs through the weights after the
    layer, and on a frozen model grad-cam's gradient would be a constant without a graph. Such a class keeps
    the layer's gradient with its graph, which grad-cam cannot release when it is a view — a layer whose
    output goes straight into a reshape, such as a pooling layer before the classifier's flatten: refused,
    naming ``layer``. The caller's tensor is untouched. bfloat16 is refused: grad-cam computes in numpy.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, *, cam_class: type,
                 name: str, upsample: bool = True, input_size: tuple[int, int, int] | None = None,
                 reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None, **cam_kwargs: Any) -> None:
        self.method_name = name
        super().__init__(model, layer, upsample, input_size, reshape_transform)
        check_keywords(cam_class, cam_kwargs, f"{cam_class.__name__}.__init__()", filled=CAM_FILLED,
                       also=LAYER_OPTIONS)
        for option, check in CAM_OPTIONS.items():
            if option in cam_kwargs:
                cam_kwargs[option] = check(cam_kwargs[option], option)
        self.cam_class, self.cam_kwargs = cam_class, cam_kwargs

    def core(self, inputs: torch.Tensor, labels: torch.Tensor, aug_smooth: bool = False,
             eigen_smooth: bool = False) -> torch.Tensor:
        """grad-cam's map of ``labels`` exactly as its class returns it — resized to the input (OpenCV), then
        min-max scaled, so each map's maximum is 1 — or at the layer's resolution with ``upsample=False``.
        """
        if inputs.dtype == torch.bfloat16:
            raise TypeError(f"{self.method_name!r} runs pytorch-grad-cam, which computes in numpy (no bfloat16); "
                            "pass float32, float16 or float64 inputs and model, or use 'differentiable_gradcam'.")
        if inputs.dtype == torch.float16 and (eigen_smooth or issubclass(self.cam_class, NUMPY_LINALG)):
            raise TypeError(f"{self.method_name!r} takes a principal component with numpy's linalg, which has no "
                            "float16; pass float32 or float64 inputs and model.")
        cam = self.cam_class(self.network, [self.layer], reshape_transform=self.reshape_transform, **self.cam_kwargs)
        self.model.requires_grad_(not cam.detach)  # restored by the contract's preserved_state around every core
        try:
            cam.compute_input_gradient = cam.compute_input_gradient or cam.uses_gradients
            if not self.upsample:  # grad-cam's map at the layer's resolution; else grad-cam resizes, then scales

                def layer_size(_: torch.Tensor) -> tuple[int, int]:
                    h, w = cam.activations_and_grads.activations[-1].shape[-2:]
                    return w, h

                cam.get_target_width_height = layer_size
            targets = [ClassifierOutputTarget(int(t)) for t in labels]
            maps = cam(input_tensor=inputs, targets=targets, aug_smooth=check_bool(aug_smooth, "aug_smooth"),
                       eigen_smooth=check_bool(eigen_smooth, "eigen_smooth"))
        finally:
            reshaped = release(cam)
        if reshaped:
            raise ValueError(f"{self.method_name!r} cannot explain `layer` {type(self.layer).__name__}: its output "
                             "goes straight into a reshape (a pooling layer before the classifier's flatten), so the "
                             f"gradient that grad-cam's {self.cam_class.__name__} keeps with its graph is a view, "
                             "which grad-cam cannot release; pass the layer before it as `layer` (the last "
                             "convolutional block), or use 'gradcam' at this layer.")
        return torch.from_numpy(maps).unsqueeze(1).to(inputs.device, inputs.dtype)


def release(cam: BaseCAM) -> bool:
    """Remove a grad-cam object's hooks; whether a gradient it kept with its graph was a view.

    grad-cam's own ``release`` detaches the kept gradients in place, which raises on a view (ShapleyCAM's
    gradient of a layer whose output is reshaped next) and leaves the hooks in place; the gradients are dropped
    here first, which frees their graph the same way.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.Flatten(), torch.nn.Linear(8, 2))
        >>> cam = gc.ShapleyCAM(net, [net[0]])
        >>> _ = cam(torch.rand(1, 3, 2, 2), [ClassifierOutputTarget(0)])
        >>> release(cam), len(cam.activations_and_grads.handles)
        (True, 0)
    """
    hooks = cam.activations_and_grads
    viewed = any(gradient._is_view() for gradient in hooks.gradients)
    hooks.gradients.clear()
    hooks.release()
    return viewed


CAM_OPTIONS: dict[str, Callable[[Any, str], Any]] = {
    "batch_size": lambda value, name: check_int(value, name, minimum=1),
    "ratio_channels_to_ablate": lambda value, name: check_float(value, name, 0.0, 1.0, strict_minimum=True),
    "k": lambda value, name: check_float(value, name, 0.0, strict_minimum=True),
    "kernel": lambda value, name: check_choice(value, name, ("linear", "poly", "rbf", "sigmoid", "cosine")),
}
"""grad-cam constructor options checked before grad-cam sees them (AblationCAM's ``batch_size`` and
``ratio_channels_to_ablate`` ∈ (0, 1], FEM's ``k`` > 0 standard deviations, KPCA-CAM's scikit-learn
``kernel``): grad-cam would otherwise fail mid-call with a numpy or torch message, or run on a misread value."""

CAM_FILLED = {"model": "model", "target_layers": "layer"}
"""The grad-cam constructor's arguments :class:`GradCamMethod` fills itself (``cam_class(model, [layer])``),
each with the argument of ``get_method`` it comes from: not options a user can pass."""

NUMPY_LINALG = (gc.EigenCAM, gc.EigenGradCAM, gc.KPCA_CAM)
"""grad-cam classes that decompose their activations with numpy's linalg (no float16 there)."""


def _register(name: str, cam_class: type, description: str) -> None:
    def factory(model: nn.Module, layer: nn.Module | str | None = None, **kwargs: Any) -> GradCamMethod:
        return GradCamMethod(model, layer, cam_class=cam_class, name=name, **kwargs)

    factory.__doc__ = description
    register_method(name, origin="grad-cam", description=description, kind="layer")(factory)


GRAD_CAM: dict[str, tuple[type, str]] = {
    "gradcam": (gc.GradCAM, "Grad-CAM: channels weighted by mean gradient, ReLU (Selvaraju et al.)"),
    "gradcam++": (gc.GradCAMPlusPlus, "Grad-CAM++: higher-order gradient weights (Chattopadhay et al.)"),
    "xgradcam": (gc.XGradCAM, "XGrad-CAM: activation-normalised gradient weights (Fu et al.)"),
    "hirescam": (gc.HiResCAM, "HiResCAM: element-wise gradient ⊙ activation (Draelos & Carin)"),
    "gradcam_elementwise": (gc.GradCAMElementWise, "Grad-CAM with element-wise ReLU(gradient ⊙ activation)"),
    "layercam": (gc.LayerCAM, "LayerCAM: positive gradients as spatial weights (Jiang et al.)"),
    "eigencam": (gc.EigenCAM, "Eigen-CAM: first principal component of the activations"),
    "eigengradcam": (gc.EigenGradCAM, "first principal component of gradient ⊙ activation"),
    "scorecam": (gc.ScoreCAM, "Score-CAM: channel weights from masked-input scores (Wang et al.)"),
    "ablationcam": (gc.AblationCAM, "Ablation-CAM: score drop when zeroing each channel"),
    "fullgrad": (gc.FullGrad, "FullGrad: input and bias gradients of every layer (ignores `layer`)"),
    "kpca_cam": (gc.KPCA_CAM, "KPCA-CAM: kernel PCA of the activations"),
    "shapleycam": (gc.ShapleyCAM, "Shapley-CAM: gradient and Hessian-vector product weights"),
    "fem": (gc.FEM, "FEM: feature explanation by channel-mean outliers (k·σ)"),
    "randomcam": (gc.RandomCAM, "random channel weights: a sanity-check baseline"),
}
"""Registry name -> (pytorch-grad-cam class, description)."""

for _name, (_cls, _description) in GRAD_CAM.items():
    _register(_name, _cls, _description)


class TopGAPMapTarget:
    """pytorch-grad-cam target selecting the class map of ``category`` from a Top-GAP output (C, h, w).

    On a 1-D output (logits) it returns the logit, so it also works with grad-cam's gradient methods.

    Example:
        >>> TopGAPMapTarget(1)(torch.arange(8.0).view(2, 2, 2)).tolist()
        [[4.0, 5.0], [6.0, 7.0]]
    """

    def __init__(self, category: int) -> None:
        self.category = category

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        """One image's class map (C, h, w) -> map ``category``, or logits (C,) -> its logit."""
        if model_output.dim() not in (1, 3):
            raise ValueError(f"TopGAPMapTarget expects one image's class maps (C, h, w) or logits (C,), got "
                             f"shape {tuple(model_output.shape)}.")
        return model_output[self.category]


CATEGORY_TARGETS = (ClassifierOutputTarget, ClassifierOutputSoftmaxTarget, ClassifierOutputReST, TopGAPMapTarget)
"""grad-cam targets that name one class: what a gradient-free method explains for them."""
TASK_TARGETS = (SemanticSegmentationTarget, FasterRCNNBoxScoreTarget)
"""grad-cam targets of segmentation and detection models: refused by name (these classes explain classifiers)."""


OWN_MAP_LAYERS = ("fuse", "head", "att_conv3", "bn_att3")
"""The layers that compute a model's own maps — Top-GAP's class maps, ABN's attention map — accepted silently as
grad-cam ``target_layers`` by the methods that read those maps."""


class GradCamBridge(BaseCAM):
    """Any registered CAM as a pytorch-grad-cam class: ``cam(input_tensor, targets)`` -> numpy (N, H, W) in [0, 1].

    The registered method (``method``) computes the maps through its own core and contract; this class only
    translates grad-cam's calling convention, as grad-cam's own classes do:

    - every layer of ``target_layers`` is explained and the per-layer maps (ReLU, min-max, resized) are
      averaged and min-max scaled again (grad-cam's ``aggregate_multi_layers``); ``reshape_transform``
      reshapes a transformer's tokens; methods that read the model's own maps (Top-GAP, Expansion CAM)
      accept ``target_layers`` as every grad-cam class does — the model's CAM layer (``fuse``, ``head``)
      silently, another layer of the model with a warning that it is not used — and refuse
      ``reshape_transform`` and modules outside the model;
    - targets: ``None`` is ``ClassifierOutputTarget`` of each image's predicted class (in eval mode), as in
      grad-cam, so it gives the same maps as those targets given explicitly, for every method.
      ``ClassifierOutputTarget(c)`` is class c's logit: the method's ``target=c`` where that explains the
      logit, else — a method whose ``target_score`` is not ``"logit"``, such as Recipro-CAM (the softmax
      probability) — the logit as its ``score``. The methods that take a ``score`` explain each other target's
      own scalar — ``ClassifierOutputSoftmaxTarget``, ``ClassifierOutputReST``, ``BinaryClassifierOutputTarget``,
      ``FinerWeightedTarget`` or any function of one image's logits to one number: the gradient methods
      (``differentiable_gradcam``, ``positive_gradcam``) differentiate it, Recipro-CAM reads it from each masked
      copy's output, and Augmented Grad-CAM's base differentiates (or reads) it on each augmented copy; targets
      of the whole output vector (``SoftmaxOutputTarget``, ``RawScoresOutputTarget``) are refused, naming them.
      The other gradient-free methods explain the target's ``category``: CAM its classifier row, Top-GAP its
      class map (or any function selecting one of an image's (C, h, w) maps, such as :class:`TopGAPMapTarget`);
      other targets are refused, naming them. ABN's attention map is class-agnostic: every classifier target
      gives the same map. Targets of other tasks (segmentation, detection) are refused
      everywhere;
    - ``aug_smooth`` (grad-cam's test-time augmentation) works for every method; ``eigen_smooth`` only for
      methods that accept it, and is refused by the others.

    Options go to the method (Augmented Grad-CAM's ``base`` may also be a grad-cam class such as
    ``GradCAMPlusPlus``). The model's train/eval flags are restored after construction (grad-cam's
    constructor calls ``model.eval()``).

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet18", num_classes=3)
        >>> with GradCamBridge.of("cam")(model, [model.layer4]) as cam:
        ...     cam(input_tensor=torch.rand(1, 3, 64, 64), targets=[ClassifierOutputTarget(2)]).shape
        (1, 64, 64)
    """

    method = "cam"

    def __init__(self, model: nn.Module, target_layers: list[nn.Module] | None = None,
                 reshape_transform: Callable | None = None, **options: Any) -> None:
        with preserved_state(model, eval_mode=False):
            super().__init__(model, [], reshape_transform, uses_gradients=False)
        base = options.get("base")
        if isinstance(base, type):  # Augmented Grad-CAM over a grad-cam class: its registry name
            options["base"] = next((name for name, (cls, _) in GRAD_CAM.items() if cls is base), base.__name__)
        spec = method_spec(self.method)
        factory = spec.load()
        if spec.kind != "layer":
            if reshape_transform is not None:
                raise ValueError(f"`reshape_transform` is not used by {spec.name!r}: it reads the model's own class "
                                 "maps, not a layer's tokens; pass reshape_transform=None.")
            self._check_own_layers(model, list(target_layers or []), spec.name)
            self.attributions: list[MethodAttribution] = [factory(model, **{"upsample": False, **options})]
        else:
            reshape = {} if reshape_transform is None else {"reshape_transform": reshape_transform}
            self.attributions = [factory(model, layer, **{"upsample": False, **reshape, **options})
                                 for layer in (list(target_layers) if target_layers else [None])]

    @staticmethod
    def _check_own_layers(model: nn.Module, layers: list[nn.Module], method: str) -> None:
        """grad-cam's ``target_layers`` for a method that reads the model's own maps: its CAM layers (``fuse``,
        ``head``) are accepted silently, other layers of the model with a warning that they are not used, and
        modules outside the model refused.
        """
        inside = {id(module) for module in model.modules()}
        foreign = [type(layer).__name__ for layer in layers if id(layer) not in inside]
        if foreign:
            raise ValueError(f"`target_layers` {foreign} are not modules of the model; {method!r} reads the model's "
                             "own class maps: pass its CAM layer (e.g. model.fuse) or target_layers=None.")
        own = {id(module) for name in OWN_MAP_LAYERS if isinstance(module := getattr(model, name, None), nn.Module)}
        if any(id(layer) not in own for layer in layers):
            warnings.warn(f"`target_layers` is not used by {method!r}: it reads the model's own class maps (the "
                          "result is the same for any layer).", UserWarning, stacklevel=3)

    @classmethod
    def of(cls, method: str) -> type[GradCamBridge]:
        """The bridge of one registered method as a grad-cam class (named ``GradCamBridge[method]``).

        Example:
            >>> GradCamBridge.of("recipro_cam").__name__
            'GradCamBridge[recipro_cam]'
        """
        name = method_spec(method).name
        return type(f"GradCamBridge[{name}]", (cls,), {"method": name, "__doc__": cls.__doc__})

    def forward(self, input_tensor: torch.Tensor, targets: list[Callable] | None,
                eigen_smooth: bool = False) -> np.ndarray:
        """Maps of ``targets`` (``None``: ``ClassifierOutputTarget`` of the predicted class) as grad-cam's numpy
        (N, H, W) in [0, 1].
        """
        input_tensor = check_images(input_tensor, self.model, "input_tensor").to(self.device)
        targets = self._targets(input_tensor, targets)
        size = self.get_target_width_height(input_tensor)
        per_layer = [scale_cam_image(self._maps(attribution, input_tensor, targets, eigen_smooth), size)
                     for attribution in self.attributions]
        return scale_cam_image(np.mean(np.stack(per_layer), axis=0))  # grad-cam's aggregate_multi_layers

    def _targets(self, input_tensor: torch.Tensor, targets: list[Callable] | None) -> list[Callable]:
        """grad-cam's targets, one per image; ``None``: ClassifierOutputTarget of the predicted class (eval mode)."""
        if targets is None:  # grad-cam's BaseCAM.forward: the argmax of the model's output, as logit targets
            with model_lock(self.model), preserved_state(self.model), torch.no_grad():
                predicted = class_scores(self.model(input_tensor)).argmax(dim=1).tolist()
            targets = [ClassifierOutputTarget(category) for category in predicted]
        if len(targets) != len(input_tensor):
            raise ValueError(f"`targets` has {len(targets)} entries for {len(input_tensor)} images; pass one per "
                             "image.")
        return targets

    def _maps(self, attribution: MethodAttribution, images: torch.Tensor, targets: list[Callable],
              eigen_smooth: bool) -> np.ndarray:
        """One method's (N, h, w) maps of the targets, ReLU'd, as numpy."""
        maps = self._explain(attribution, images, targets, eigen_smooth)[:, 0]
        return maps.detach().clamp_min(0).float().cpu().numpy()

    def _explain(self, attribution: MethodAttribution, images: torch.Tensor, targets: list[Callable],
                 eigen_smooth: bool) -> torch.Tensor:
        """One method's attributions (N, ·, h, w) of grad-cam's targets (the conventions of the class docstring)."""
        accepted = attribution.accepted_options() or frozenset()
        options: dict[str, Any] = {}
        if eigen_smooth:
            if "eigen_smooth" not in accepted:
                raise ValueError(f"`eigen_smooth` is not available for {attribution.method_name!r}: it is a "
                                 "projection of grad-cam's weighted activations; use aug_smooth or a grad-cam class.")
            options["eigen_smooth"] = True
        refused = [type(t).__name__ for t in targets if isinstance(t, TASK_TARGETS)]
        if refused:
            raise TypeError(f"targets {sorted(set(refused))} are for segmentation or detection models; "
                            f"{attribution.method_name!r} explains a classifier's class scores.")
        if getattr(attribution, "class_agnostic", False):  # one map whatever the class (ABN's attention)
            return attribution.attribute(images, target=None, **options)
        class_maps = getattr(attribution, "class_maps", None)
        core: Callable = getattr(attribution, "core", None) or attribution._attribute
        takes_score = "score" in inspect.signature(core).parameters
        logit_targets = all(isinstance(t, ClassifierOutputTarget) for t in targets)
        by_class = logit_targets and getattr(attribution, "target_score", "logit") == "logit"  # target=c: c's logit
        if not by_class and takes_score:  # the target's own scalar, per image or per copy
            return attribution.attribute(images, target=None, score=self._score(targets), **options)
        if not by_class and callable(class_maps):
            with preserved_state(self.model):
                _, cam = class_maps(images)
            return torch.stack([self._class_map(t, maps) for t, maps in zip(targets, cam, strict=True)]).unsqueeze(1)
        return attribution.attribute(images, target=[self._category(t, attribution) for t in targets], **options)

    @staticmethod
    def _score(targets: list[Callable]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Each row's scalar by its image's own target (``owners``: the image of each row, copies included), as
        one (M,) tensor — what a gradient method differentiates and Recipro-CAM reads per masked copy.
        """
        def score(logits: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
            values = []
            for row, owner in zip(logits, owners.tolist(), strict=True):
                target = targets[owner]
                value = torch.as_tensor(target(row))
                if value.numel() != 1:
                    raise ValueError(f"target {type(target).__name__} gives {value.numel()} numbers per image; a "
                                     "gradient needs one (a class score): use ClassifierOutputTarget(c) or "
                                     "ClassifierOutputSoftmaxTarget(c).")
                values.append(value.reshape(()))
            return torch.stack(values)

        return score

    @staticmethod
    def _class_map(target: Callable, maps: torch.Tensor) -> torch.Tensor:
        """One image's Top-GAP class map of ``target``: its category's map, or the (h, w) map a custom target
        selects from the class maps (C, h, w).
        """
        if isinstance(target, CATEGORY_TARGETS):
            return maps[int(target.category)]
        selected = torch.as_tensor(target(maps))
        if selected.shape != maps.shape[1:]:
            raise ValueError(f"target {type(target).__name__} gives shape {tuple(selected.shape)} from the class "
                             f"maps {tuple(maps.shape)}; a Top-GAP map target must select one (h, w) map, as "
                             "ClassifierOutputTarget(c) or TopGAPMapTarget(c) do.")
        return selected

    @staticmethod
    def _category(target: Callable, attribution: MethodAttribution) -> int:
        if not isinstance(target, CATEGORY_TARGETS):
            raise TypeError(f"target {type(target).__name__} is not available for {attribution.method_name!r}, "
                            "which explains one class: pass ClassifierOutputTarget(c) (or "
                            "ClassifierOutputSoftmaxTarget(c), ClassifierOutputReST(c)), or None.")
        return int(target.category)


class PerceptionVisualization(GradCamBridge):
    """Perception Visualization as a pytorch-grad-cam class: ``cam(input_tensor, targets)`` -> numpy (N, H, W, C).

    PV is an image, not a heat map: the bridge returns it channels-last in [0, 1], ready for ``plt.imshow`` (no
    ``show_cam_on_image`` overlay needed). Targets follow :class:`GradCamBridge` (``None``: the predicted class;
    ``ClassifierOutputTarget(c)``: class c's logit; scalar targets such as ``ClassifierOutputSoftmaxTarget`` are
    differentiated by PV's Grad-CAM). ``target_layers`` may name the decoder's layer (or be ``None``); another
    layer is refused — PV's Grad-CAM and reconstruction are of one layer. ``aug_smooth`` and ``eigen_smooth``
    are refused (they average or project heat maps).

    Example:
        >>> import timm
        >>> from captum_topgap.models import PerceptionDecoder
        >>> model = timm.create_model("resnet18", num_classes=3)
        >>> decoder = PerceptionDecoder(model, image_size=64)
        >>> with PerceptionVisualization(model, [model.layer4], decoder=decoder) as cam:
        ...     cam(input_tensor=torch.rand(2, 3, 64, 64), targets=None).shape
        (2, 64, 64, 3)
    """

    method = "perception_visualization"

    def __init__(self, model: nn.Module, target_layers: list[nn.Module] | None = None,
                 reshape_transform: Callable | None = None, **options: Any) -> None:
        super().__init__(model, None, reshape_transform, **options)
        decoder = self.attributions[0].decoder
        other = [type(layer).__name__ for layer in target_layers or [] if layer is not decoder.layer]
        if other:
            raise ValueError(f"`target_layers` {other} are not the decoder's layer {decoder.layer_name!r}: PV combines "
                             "the Grad-CAM and the reconstruction of one layer. Pass [the decoder's layer] or None.")

    def __call__(self, input_tensor: torch.Tensor, targets: list[Callable] | None = None,
                 aug_smooth: bool = False, eigen_smooth: bool = False) -> np.ndarray:
        """PV of ``targets`` as numpy (N, H, W, C) in [0, 1]."""
        for name, value in (("aug_smooth", aug_smooth), ("eigen_smooth", eigen_smooth)):
            if value:
                raise ValueError(f"`{name}` is not available for Perception Visualization: it smooths heat maps, and "
                                 "PV is an image; call without it.")
        return self.forward(input_tensor, targets)

    def forward(self, input_tensor: torch.Tensor, targets: list[Callable] | None,
                eigen_smooth: bool = False) -> np.ndarray:
        """PV images (N, H, W, C) in [0, 1] of ``targets`` (``None``: the predicted class)."""
        input_tensor = check_images(input_tensor, self.model, "input_tensor").to(self.device)
        targets = self._targets(input_tensor, targets)
        pv = self._explain(self.attributions[0], input_tensor, targets, eigen_smooth)
        return pv.detach().permute(0, 2, 3, 1).float().cpu().numpy()


TopGAPCAM = GradCamBridge.of("topgap_cam")
CAM = GradCamBridge.of("cam")
ReciproCAM = GradCamBridge.of("recipro_cam")
DifferentiableGradCAM = GradCamBridge.of("differentiable_gradcam")
ExpansionCAM = GradCamBridge.of("expansion_cam")
AugmentedGradCAM = GradCamBridge.of("augmented_gradcam")
ABNAttention = GradCamBridge.of("abn_attention")

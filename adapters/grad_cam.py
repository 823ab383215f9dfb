"""pytorch-grad-cam both ways: its CAM classes by name in the registry, and every registered CAM as a grad-cam class.

- :class:`GradCamMethod`: a pytorch-grad-cam class (``GradCAM``, ``ScoreCAM``, …) under the project's
  method contract — one ``ClassifierOutputTarget`` per image, the result a float tensor (N, 1, H, W) in
  [0, 1] (grad-cam's own per-image min-max scaling) at input resolution, or at the layer's with
  ``upsample=False``.
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

from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_grad_cam as gc
import torch
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from captum_topgap._checks import check_images
from captum_topgap._state import preserved_state
from captum_topgap.attribution import LayerMethod, MethodAttribution
from captum_topgap.registry import method_spec, register_method


class GradCamMethod(LayerMethod):
    """A pytorch-grad-cam class (``cam_class``) over the contract's layer, called the way grad-cam users call it.

    Constructor keyword arguments (``reshape_transform``, ``batch_size`` of AblationCAM, ``k`` of FEM, …)
    go to the grad-cam class; ``attribute`` accepts grad-cam's ``aug_smooth`` and ``eigen_smooth``.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, *, cam_class: type,
                 name: str, upsample: bool = True, input_size: tuple[int, int, int] | None = None,
                 **cam_kwargs: Any) -> None:
        self.method_name = name
        super().__init__(model, layer, upsample, input_size)
        self.cam_class, self.cam_kwargs = cam_class, cam_kwargs

    def core(self, inputs: torch.Tensor, labels: torch.Tensor, aug_smooth: bool = False,
             eigen_smooth: bool = False) -> torch.Tensor:
        """grad-cam's map of ``labels``, scaled to [0, 1], at the layer's resolution."""
        cam = self.cam_class(self.model, [self.layer], **self.cam_kwargs)
        try:
            def layer_size(_: torch.Tensor) -> tuple[int, int]:
                h, w = cam.activations_and_grads.activations[-1].shape[-2:]
                return w, h

            cam.get_target_width_height = layer_size
            targets = [ClassifierOutputTarget(int(t)) for t in labels]
            maps = cam(input_tensor=inputs, targets=targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        finally:
            cam.activations_and_grads.release()
        return torch.from_numpy(maps).unsqueeze(1).to(inputs.device)


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


class GradCamBridge(BaseCAM):
    """Any registered CAM as a pytorch-grad-cam class: ``cam(input_tensor, targets)`` -> numpy (N, H, W) in [0, 1].

    The registered method (``method``) computes the maps through its own core and contract; this class
    only translates grad-cam's calling convention: ``target_layers[-1]`` is the layer, ``targets`` become
    class indices (``ClassifierOutputTarget.category``; ``None``: the predicted class), and grad-cam's own
    post-processing (ReLU, per-image min-max, resize to the input, ``scale_cam_image``) makes the output.
    For a model that computes every class map itself (Top-GAP), a target may also be any callable on one
    image's (C, h, w) maps, such as :class:`TopGAPMapTarget`. Options go to the method (Augmented Grad-CAM's
    ``base`` may also be a grad-cam class such as ``GradCAMPlusPlus``). The model's train/eval flags are
    restored after construction (grad-cam's constructor calls ``model.eval()``).

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
        layer = {"layer": target_layers[-1]} if target_layers and spec.kind == "layer" else {}
        self.attribution: MethodAttribution = spec.load()(model, **layer, **{"upsample": False, **options})

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
        """Maps of ``targets`` (``None``: the predicted class) as grad-cam's numpy (N, H, W) in [0, 1]."""
        input_tensor = check_images(input_tensor, self.model, "input_tensor").to(self.device)
        if targets is not None and len(targets) != len(input_tensor):
            raise ValueError(f"`targets` has {len(targets)} entries for {len(input_tensor)} images; pass one per "
                             "image.")
        class_maps = getattr(self.attribution, "class_maps", None)
        if callable(class_maps) and targets is not None and not all(hasattr(t, "category") for t in targets):
            with preserved_state(self.model):
                _, cam = class_maps(input_tensor)
            maps = torch.stack([target(image_maps) for target, image_maps in zip(targets, cam, strict=True)])
        else:
            labels = None if targets is None else [self._category(t) for t in targets]
            maps = self.attribution.attribute(input_tensor, target=labels)[:, 0]
        heat = maps.detach().clamp_min(0).float().cpu().numpy()
        return scale_cam_image(heat, self.get_target_width_height(input_tensor))

    @staticmethod
    def _category(target: Callable) -> int:
        if not hasattr(target, "category"):
            raise TypeError(f"targets must be ClassifierOutputTarget(c) (or None for the predicted class), got "
                            f"{type(target).__name__}.")
        return int(target.category)


TopGAPCAM = GradCamBridge.of("topgap_cam")
CAM = GradCamBridge.of("cam")
ReciproCAM = GradCamBridge.of("recipro_cam")
DifferentiableGradCAM = GradCamBridge.of("differentiable_gradcam")
ExpansionCAM = GradCamBridge.of("expansion_cam")
AugmentedGradCAM = GradCamBridge.of("augmented_gradcam")

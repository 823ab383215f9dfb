"""pytorch-grad-cam side of the plugin.

Every pytorch-grad-cam CAM class is registered as a Captum attribution (:class:`GradCamMethod`): the
real grad-cam class computes the map, with one ``ClassifierOutputTarget`` per image, and the result
comes back as a float tensor (N, 1, H, W) in [0, 1] — grad-cam's own per-image min-max scaling —
at input resolution, or at the layer's resolution with ``upsample=False``.

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
from captum_topgap.methods.topgap_cam import class_maps, select_maps
from captum_topgap.registry import register_method

from . import captum as captum_adapters
from .captum import MethodAttribution


class GradCamMethod(MethodAttribution):
    """A pytorch-grad-cam class (``cam_class``) over ``layer``, called the way grad-cam users call it.

    Constructor keyword arguments (``reshape_transform``, ``batch_size`` of AblationCAM, ``k`` of FEM, …)
    go to the grad-cam class; ``attribute`` accepts grad-cam's ``aug_smooth`` and ``eigen_smooth``.
    """

    needs_layer = True

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, *, cam_class: type,
                 name: str, upsample: bool = True, input_size: tuple[int, int, int] | None = None,
                 **cam_kwargs: Any) -> None:
        self.method_name = name
        super().__init__(model, layer, input_size)
        self.cam_class, self.upsample, self.cam_kwargs = cam_class, upsample, cam_kwargs

    def _attribute(self, inputs: torch.Tensor, target: torch.Tensor, aug_smooth: bool = False,
                   eigen_smooth: bool = False) -> torch.Tensor:
        cam = self.cam_class(self.model, [self.layer], **self.cam_kwargs)
        try:
            if not self.upsample:
                def layer_size(_: torch.Tensor) -> tuple[int, int]:
                    h, w = cam.activations_and_grads.activations[-1].shape[-2:]
                    return w, h

                cam.get_target_width_height = layer_size
            targets = [ClassifierOutputTarget(int(t)) for t in target]
            maps = cam(input_tensor=inputs, targets=targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        finally:
            cam.activations_and_grads.release()
        return torch.from_numpy(maps).unsqueeze(1).to(inputs.device)


def _register(name: str, cam_class: type, description: str, aliases: tuple[str, ...] = ()) -> None:
    def factory(model: nn.Module, layer: nn.Module | str | None = None, **kwargs: Any) -> GradCamMethod:
        return GradCamMethod(model, layer, cam_class=cam_class, name=name, **kwargs)

    factory.__doc__ = description
    register_method(name, origin="grad-cam", description=description, kind="layer", aliases=aliases)(factory)


_GRAD_CAM: dict[str, tuple[Callable[..., Any], str, tuple[str, ...]]] = {
    "gradcam": (gc.GradCAM, "Grad-CAM: channels weighted by mean gradient, ReLU (Selvaraju et al.)", ()),
    "gradcam++": (gc.GradCAMPlusPlus, "Grad-CAM++: higher-order gradient weights (Chattopadhay et al.)", ()),
    "xgradcam": (gc.XGradCAM, "XGrad-CAM: activation-normalised gradient weights (Fu et al.)", ()),
    "hirescam": (gc.HiResCAM, "HiResCAM: element-wise gradient ⊙ activation (Draelos & Carin)", ()),
    "gradcam_elementwise": (gc.GradCAMElementWise, "Grad-CAM with element-wise ReLU(gradient ⊙ activation)",
                            ()),
    "layercam": (gc.LayerCAM, "LayerCAM: positive gradients as spatial weights (Jiang et al.)", ()),
    "eigencam": (gc.EigenCAM, "Eigen-CAM: first principal component of the activations", ()),
    "eigengradcam": (gc.EigenGradCAM, "first principal component of gradient ⊙ activation", ()),
    "scorecam": (gc.ScoreCAM, "Score-CAM: channel weights from masked-input scores (Wang et al.)", ()),
    "ablationcam": (gc.AblationCAM, "Ablation-CAM: score drop when zeroing each channel", ()),
    "fullgrad": (gc.FullGrad, "FullGrad: input and bias gradients of every layer (ignores `layer`)", ()),
    "kpca_cam": (gc.KPCA_CAM, "KPCA-CAM: kernel PCA of the activations", ()),
    "shapleycam": (gc.ShapleyCAM, "Shapley-CAM: gradient and Hessian-vector product weights", ()),
    "fem": (gc.FEM, "FEM: feature explanation by channel-mean outliers (k·σ)", ()),
    "randomcam": (gc.RandomCAM, "random channel weights: a sanity-check baseline", ()),
}

for _name, (_cls, _description, _aliases) in _GRAD_CAM.items():
    _register(_name, _cls, _description, _aliases)


class TopGAPCAM(BaseCAM):
    """Top-GAP class maps as a pytorch-grad-cam class: ``cam(input_tensor, targets)`` -> numpy (N, H, W) in [0, 1].

    Targets select class maps: ``ClassifierOutputTarget(c)`` and :class:`TopGAPMapTarget` ``(c)`` select
    map c (grad-cam's ClassifierOutputTarget would index a row on a 3-D output, so it is read by its
    ``category``); any other callable receives the image's (C, h, w) maps and returns an (h, w) map;
    ``targets=None`` takes the predicted class. ReLU, per-image
    min-max scaling and the resize to the input are grad-cam's own (``scale_cam_image``). The model's
    train/eval flags are restored after construction and after every call (grad-cam's constructor would
    leave it in eval mode).

    Example:
        >>> import timm
        >>> model = timm.create_model("topgap_resnet18", num_classes=4, k=16)
        >>> with TopGAPCAM(model) as cam:
        ...     maps = cam(input_tensor=torch.rand(2, 3, 64, 64), targets=[ClassifierOutputTarget(1)] * 2)
        >>> maps.shape, maps.dtype, bool(0.0 <= maps.min() <= maps.max() <= 1.0)
        ((2, 64, 64), dtype('float32'), True)
    """

    def __init__(self, model: nn.Module, target_layers: list[nn.Module] | None = None,
                 reshape_transform: Callable | None = None) -> None:
        with preserved_state(model, eval_mode=False):
            super().__init__(model, [], reshape_transform, uses_gradients=False)

    def forward(self, input_tensor: torch.Tensor, targets: list[Callable] | None,
                eigen_smooth: bool = False) -> np.ndarray:
        input_tensor = check_images(input_tensor, self.model, "input_tensor").to(self.device)
        with preserved_state(self.model):
            logits, cam = class_maps(self.model, input_tensor)
        if targets is None:
            targets = [TopGAPMapTarget(int(c)) for c in logits.argmax(1)]
        targets = [TopGAPMapTarget(t.category) if isinstance(t, ClassifierOutputTarget) else t for t in targets]
        maps = select_maps(cam, targets).clamp_min(0).cpu().numpy()
        return scale_cam_image(maps, self.get_target_width_height(input_tensor))


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
        if model_output.dim() not in (1, 3):
            raise ValueError(f"TopGAPMapTarget expects one image's class maps (C, h, w) or logits (C,), got "
                             f"shape {tuple(model_output.shape)}.")
        return model_output[self.category]


def target_categories(targets: list[Callable] | None, logits: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Class indices from grad-cam targets: ``ClassifierOutputTarget.category``; ``None``: predicted class."""
    if targets is None:
        return logits().argmax(1)
    categories = []
    for target in targets:
        if not hasattr(target, "category"):
            raise TypeError(f"targets must be ClassifierOutputTarget(c) (or None for the predicted class), got "
                            f"{type(target).__name__}.")
        categories.append(int(target.category))
    return torch.tensor(categories)


class CoreCAM(BaseCAM):
    """Base of the plugin's grad-cam classes over a registered Captum-side method (the same core).

    ``forward`` turns the targets into class indices, calls the method's ``attribute`` at layer resolution
    and applies grad-cam's own post-processing (ReLU, per-image min-max, resize to the input).
    """

    method_class: type[MethodAttribution]

    def __init__(self, model: nn.Module, target_layers: list[nn.Module] | None = None,
                 reshape_transform: Callable | None = None, **options: Any) -> None:
        with preserved_state(model, eval_mode=False):
            super().__init__(model, [], reshape_transform, uses_gradients=False)
        layer = target_layers[-1] if target_layers else None
        self.method = self.method_class(model, layer=layer, **{"upsample": False, **options})

    def forward(self, input_tensor: torch.Tensor, targets: list[Callable] | None,
                eigen_smooth: bool = False) -> np.ndarray:
        input_tensor = check_images(input_tensor, self.model, "input_tensor").to(self.device)

        def logits() -> torch.Tensor:
            with preserved_state(self.model), torch.no_grad():
                return self.model(input_tensor)

        labels = target_categories(targets, logits).to(input_tensor.device)
        maps = self.method.attribute(input_tensor, target=labels)[:, 0].clamp_min(0).detach().cpu().numpy()
        return scale_cam_image(maps, self.get_target_width_height(input_tensor))


class CAM(CoreCAM):
    """Class Activation Mapping as a grad-cam class (GAP+FC networks); ``target_layers[-1]`` is the last block.

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet18", num_classes=3)
        >>> with CAM(model, [model.layer4]) as cam:
        ...     cam(input_tensor=torch.rand(1, 3, 64, 64), targets=[ClassifierOutputTarget(2)]).shape
        (1, 64, 64)
    """

    method_class = captum_adapters.CAM


class ReciproCAM(CoreCAM):
    """Recipro-CAM as a grad-cam class; options ``gaussian`` and ``chunk_size``."""

    method_class = captum_adapters.ReciproCAM


class DifferentiableGradCAM(CoreCAM):
    """The plugin's torch-native Grad-CAM core as a grad-cam class."""

    method_class = captum_adapters.DifferentiableGradCAM


class ExpansionCAM(CoreCAM):
    """Expansion CAM as a grad-cam class: ``ExpansionCAM(model, expansion=net)``; ``output`` and the
    refinement options are those of the Captum class (no ``target_layers``: it reads the expansion network).

    Example:
        >>> import timm
        >>> from captum_topgap.models import ExpansionNet
        >>> localizer = timm.create_model("resnet18", num_classes=3)
        >>> with ExpansionCAM(localizer, expansion=ExpansionNet(localizer), hole_area=16) as cam:
        ...     cam(input_tensor=torch.rand(1, 3, 32, 32), targets=[ClassifierOutputTarget(2)]).shape
        (1, 32, 32)
    """

    method_class = captum_adapters.ExpansionCAM


class AugmentedGradCAM(CoreCAM):
    """Augmented Grad-CAM as a grad-cam class; ``base`` is a registry name or a grad-cam class
    (``GradCAMPlusPlus`` …) and the augmentation / solver options are those of the Captum class."""

    method_class = captum_adapters.AugmentedGradCAM

    def __init__(self, model: nn.Module, target_layers: list[nn.Module] | None = None,
                 reshape_transform: Callable | None = None, base: str | type = "gradcam", **options: Any) -> None:
        if isinstance(base, type):
            base = next((name for name, (cls, _, _) in _GRAD_CAM.items() if cls is base), None) or base.__name__
        super().__init__(model, target_layers, reshape_transform, base=base, **options)

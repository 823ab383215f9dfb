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

import pytorch_grad_cam as gc
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from captum_topgap.registry import register_method

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

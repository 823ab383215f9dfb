"""``"smooth:NAME"``: Captum's ``NoiseTunnel`` (SmoothGrad, Smilkov et al. 2017) over any registered method.

    S(x) = 1/n Σ_{i=1..n} A(x + ε_i),    ε_i ~ N(0, σ²)

``"smooth:gradcam++"`` is Smooth Grad-CAM++. ``target=None`` explains the class predicted on the clean
input (not on each noisy copy).

Example:
    >>> import captum_topgap
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> smooth = captum_topgap.get_method("smooth:gradcam++", net, nt_samples=4, stdevs=0.1)
    >>> smooth.attribute(torch.rand(2, 3, 8, 8), target=[0, 1]).shape
    torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

from typing import Any

import torch
from captum import attr
from captum.attr import Attribution
from captum.log import log_usage
from torch import nn

from captum_topgap._checks import TargetType, check_float, check_images, check_int
from captum_topgap._state import preserved_state
from captum_topgap.attribution import MethodAttribution, model_lock, unwrap_inputs
from captum_topgap.registry import get_method, register_composition


class Smoothed(Attribution):
    """The mean of ``method``'s attributions over ``nt_samples`` noisy copies (standard deviation ``stdevs``).

    Args:
        method: a registered method (a :class:`~captum_topgap.attribution.MethodAttribution`).
        nt_samples, stdevs, nt_samples_batch_size: NoiseTunnel's options (overridable per call).
    """

    def __init__(self, method: MethodAttribution, nt_samples: int = 16, stdevs: float = 0.15,
                 nt_samples_batch_size: int | None = None) -> None:
        super().__init__(method.model)
        self.model, self.method, self.tunnel = method.model, method, attr.NoiseTunnel(method)
        self.options = tunnel_options(nt_samples=nt_samples, stdevs=stdevs,
                                      nt_samples_batch_size=nt_samples_batch_size)

    @property
    def layer(self) -> nn.Module | None:
        """The inner method's layer (``None`` for pixel methods)."""
        return getattr(self.method, "layer", None)

    @log_usage()
    def attribute(self, inputs: torch.Tensor | tuple[torch.Tensor], target: TargetType = None, **kwargs: Any) -> Any:
        """Mean of the method's attributions over noisy copies; ``nt_samples``/``stdevs`` may be overridden.
        A 1-tuple of images gives a 1-tuple of attributions (Captum's convention).
        """
        images = check_images(unwrap_inputs(inputs)[0], self.model)
        with model_lock(self.model), preserved_state(self.model):
            labels = self.method.labels(images, target)
        options = {**self.options, **tunnel_options(**{k: kwargs.pop(k) for k in list(kwargs) if k in self.options})}
        return self.tunnel.attribute(inputs, nt_type="smoothgrad", target=labels, **options, **kwargs)


def tunnel_options(**options: Any) -> dict[str, Any]:
    """NoiseTunnel's options, checked: ``nt_samples`` ≥ 1, ``stdevs`` ≥ 0, ``nt_samples_batch_size`` ≥ 1 or None.

    Example:
        >>> tunnel_options(nt_samples=4, stdevs=0.1)
        {'nt_samples': 4, 'stdevs': 0.1}
    """
    checks = {"nt_samples": lambda v: check_int(v, "nt_samples", minimum=1),
              "stdevs": lambda v: check_float(v, "stdevs", minimum=0.0),
              "nt_samples_batch_size": lambda v: None if v is None else check_int(v, "nt_samples_batch_size",
                                                                                  minimum=1)}
    return {name: checks[name](value) for name, value in options.items()}


@register_composition("smooth")
def smoothed(inner: str, model: nn.Module, layer: nn.Module | str | None = None, nt_samples: int = 16,
             stdevs: float = 0.15, nt_samples_batch_size: int | None = None, **options: Any) -> Smoothed:
    """``smooth:NAME``: NoiseTunnel's options go to the tunnel, every other option to NAME.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> smoothed("saliency", net, nt_samples=2).options["nt_samples"]
        2
    """
    return Smoothed(get_method(inner, model, layer, **options), nt_samples, stdevs, nt_samples_batch_size)

"""The method contract, written once: every registered method is a :class:`MethodAttribution`.

``attribute(inputs, target=None, **options)``:

1. checks ``inputs`` (a float batch (N, C, H, W) with the model's channels, finite, non-empty);
2. runs inside :func:`captum_topgap._state.preserved_state`: the model in eval mode, its exact state
   (train/eval flags, ``requires_grad``, ``.grad``, hooks) restored afterwards, also on errors;
3. turns ``target`` into one class index per image (:func:`resolve_labels`; ``None`` = predicted class);
4. calls the method's ``_attribute``; layer methods (:class:`LayerMethod`) compute a (N, 1, h, w) map at the
   layer's resolution in ``core`` and upsample it bilinearly to the input (``upsample=False`` keeps h × w).

``attribute`` carries Captum's ``log_usage`` decorator like Captum's own methods, so Captum wrappers that
call ``attribute.__wrapped__`` (``NoiseTunnel``) accept every registered method.

Example:
    >>> class Mean(LayerMethod):
    ...     def core(self, inputs, labels):
    ...         with capture([self.layer]) as seen:
    ...             self.model(inputs)
    ...         return seen.ready()[0].mean(1, keepdim=True)
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> method = Mean(net)
    >>> method.layer_name, tuple(method.attribute(torch.rand(2, 3, 8, 8), target=1).shape)
    ('1', (2, 1, 8, 8))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from captum.attr import Attribution
from captum.log import log_usage
from torch import nn

from captum_topgap._checks import TargetType, check_images, check_target
from captum_topgap._hooks import capture
from captum_topgap._layers import check_spatial_layer, default_layer, example_input, resolve_layer
from captum_topgap._state import preserved_state

__all__ = ["LayerMethod", "MethodAttribution", "capture", "class_scores", "resolve_labels", "upsample_to"]


def upsample_to(maps: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, 1, h, w) maps to ``size`` (half-pixel centres, as OpenCV); no-op at that size.

    Example:
        >>> upsample_to(torch.ones(1, 1, 2, 2), (8, 8)).shape
        torch.Size([1, 1, 8, 8])
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def class_scores(output: object) -> torch.Tensor:
    """The model's output as class scores (N, classes), or a clear error.

    Example:
        >>> class_scores(torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"the model must return class scores of shape (N, classes), got {shape}; "
                         "wrap it so that forward returns logits.")
    return output


def resolve_labels(target: TargetType, batch_size: int, logits: Callable[[], torch.Tensor],
                   num_classes: int | None = None) -> torch.Tensor:
    """One class index per image: ``target`` checked against the number of classes, or — for ``None`` — the
    predicted class. ``logits()`` is called only when needed (for ``None``, or to learn the classes).

    Example:
        >>> resolve_labels(None, 2, lambda: torch.tensor([[0.0, 1.0], [2.0, 0.0]])).tolist()
        [1, 0]
        >>> resolve_labels([1, 0], 2, lambda: torch.zeros(2, 2)).tolist()
        [1, 0]
    """
    if target is None:
        return logits().argmax(dim=1)
    if num_classes is None:
        num_classes = logits().shape[1]
    return check_target(target, batch_size, num_classes)


class MethodAttribution(Attribution):
    """Base of every registered method: checked inputs, labels from ``target``, the model-state contract.

    Subclasses implement ``_attribute(inputs, labels, **options)`` with ``labels`` a checked (N,) long
    tensor on the inputs' device. A method whose own forward yields the logits (Top-GAP CAM) sets
    ``target_from_own_forward = True``: it then receives ``target`` as given and resolves it with
    :func:`resolve_labels` on those logits, saving a forward.
    """

    method_name = "method"
    target_from_own_forward = False
    _attribute: Callable[..., torch.Tensor]  # (inputs, labels, **options) -> attributions, per method

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        if layer is not None:
            raise ValueError(f"`layer` is not used by the pixel method {self.method_name!r}; leave it None.")
        super().__init__(model)
        self.model = model
        self._num_classes: int | None = None

    @log_usage()
    def attribute(self, inputs: torch.Tensor, target: TargetType = None, **options: Any) -> torch.Tensor:
        """Attributions of ``target`` (class indices; ``None`` = predicted class) for ``inputs`` (N, C, H, W).

        Gradients are enabled inside, so a caller's ``torch.no_grad()`` (NoiseTunnel's) does not break
        gradient methods.
        """
        inputs = check_images(inputs, self.model)
        with preserved_state(self.model), torch.enable_grad():
            labels = target if self.target_from_own_forward else self.labels(inputs, target)
            return self._attribute(inputs, labels, **options)

    def labels(self, inputs: torch.Tensor, target: TargetType) -> torch.Tensor:
        """``target`` as one class index per image (one forward without gradients when it must be read)."""
        def logits() -> torch.Tensor:
            with torch.no_grad():
                out = class_scores(self.model(inputs if target is None else inputs[:1]))
            self._num_classes = out.shape[1]
            return out

        return resolve_labels(target, inputs.shape[0], logits, self._num_classes).to(inputs.device)



class LayerMethod(MethodAttribution):
    """A CAM over one layer: ``core(inputs, labels)`` gives (N, 1, h, w) at the layer's resolution, detached
    unless the core is asked to keep its graph; ``attribute`` upsamples it to the input (``upsample=False``:
    the layer's resolution). Subclasses define ``core(inputs, labels, **options)``.

    ``layer`` is a module or its dotted name; ``None`` picks the last module with a spatial output, found by
    tracing one forward of the first input when it is first needed (``input_size`` (C, H, W) sets the probe
    used when ``.layer`` is read before any call). ``.layer`` and ``.layer_name`` expose the choice.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, upsample: bool = True,
                 input_size: tuple[int, int, int] | None = None) -> None:
        super().__init__(model)
        self.upsample, self.input_size = upsample, input_size
        self._layer = None if layer is None else resolve_layer(model, layer)
        self._checked = False

    @property
    def layer(self) -> nn.Module:
        """The explained layer (traced with a probe of ``input_size`` if no call has chosen it yet)."""
        if self._layer is None:
            self._bind(example_input(self.model, self.input_size))
        assert self._layer is not None
        return self._layer

    @property
    def layer_name(self) -> str:
        """The layer's dotted name in the model."""
        layer = self.layer
        return next(name for name, module in self.model.named_modules() if module is layer)

    def _bind(self, example: torch.Tensor) -> None:
        """Choose the default layer, or check the given one, with one traced forward of ``example``."""
        if self._layer is None:
            self._layer = default_layer(self.model, example)[1]
        elif not self._checked:
            check_spatial_layer(self.model, self._layer, example)
        self._checked = True

    core: Callable[..., torch.Tensor]  # (inputs, labels, **options) -> (N, 1, h, w) at the layer, per method

    def _attribute(self, inputs: torch.Tensor, labels: torch.Tensor, **options: Any) -> torch.Tensor:
        if not self._checked:
            self._bind(inputs[:1])
        maps = self.core(inputs, labels, **options)
        return upsample_to(maps, inputs.shape[-2:]) if self.upsample else maps

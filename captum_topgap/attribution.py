"""The method contract, written once: every registered method is a :class:`MethodAttribution`.

``attribute(inputs, target=None, additional_forward_args=None, **options)``:

1. takes a tensor (N, C, H, W) or Captum's 1-tuple of it, and returns the same kind; checks it (float,
   the model's channels and dtype, finite, non-empty) and never touches the caller's tensor (no ``.grad``);
2. holds the model's lock (two threads on one model wait for each other) and runs inside
   :func:`captum_topgap._state.preserved_state`: the model in eval mode, its exact state (train/eval
   flags, ``requires_grad``, ``.grad``, hooks) restored afterwards, also on errors;
3. turns ``target`` into one class index per image (:func:`resolve_labels`; ``None`` = predicted class);
   every forward — the label probe, the layer trace and the method's own — gets ``additional_forward_args``;
4. refuses options the method does not take, naming them; ``return_convergence_delta`` is honoured by the
   methods that have a convergence delta and refused by the others;
5. calls the method's ``_attribute`` and returns its maps in the inputs' dtype (NaN or Inf in them is an
   error, never a silent result); layer methods (:class:`LayerMethod`) compute a (N, 1, h, w) map at the
   layer's resolution in ``core`` and upsample it bilinearly to the input (``upsample=False`` keeps h × w),
   warning when the map is degenerate (a 1 × 1 layer, or zero everywhere).

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
    >>> type(method.attribute((torch.rand(2, 3, 8, 8),), target=1)).__name__  # Captum's tuple convention
    'tuple'
"""

from __future__ import annotations

import functools
import inspect
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from captum.attr import Attribution
from captum.log import log_usage
from torch import nn

from captum_topgap._checks import (
    TargetType,
    all_finite,
    check_bool,
    check_images,
    check_input_size,
    check_target,
    model_dtype,
)
from captum_topgap._hooks import capture
from captum_topgap._layers import (
    default_layer,
    example_input,
    layer_shape,
    resolve_layer,
    transformer_reshape,
    vit_norm1,
)
from captum_topgap._state import preserved_state

__all__ = ["LAYER_OPTIONS", "LayerMethod", "MethodAttribution", "Reshape", "capture", "class_scores", "resolve_labels",
           "unwrap_inputs", "upsample_to"]

Reshape = Callable[[torch.Tensor], torch.Tensor]
_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock every method holds while it uses ``model`` (re-entrant: a method may call another).

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> model_lock(net) is model_lock(net)
        True
    """
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(model, threading.RLock())


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


def unwrap_inputs(inputs: object) -> tuple[object, bool]:
    """Captum's convention: a tensor, or a 1-tuple of it; returns the tensor and whether it came as a tuple.

    Example:
        >>> unwrap_inputs((torch.zeros(1, 3, 2, 2),))[1]
        True
    """
    if not isinstance(inputs, tuple):
        return inputs, False
    if len(inputs) != 1:
        raise ValueError(f"`inputs` must be one image tensor or a 1-tuple of it (Captum's convention), got a tuple "
                         f"of {len(inputs)}; images are one input of shape (N, C, H, W).")
    return inputs[0], True


@functools.cache
def named_options(function: Callable[..., Any]) -> frozenset[str] | None:
    """The options a method's ``core`` / ``_attribute`` takes after ``(self, inputs, labels)``; ``None`` when it
    takes ``**options``. Read once per function: every call checks its options against them.

    Example:
        >>> def core(self, inputs, labels, aug_smooth=False): ...
        >>> named_options(core)
        frozenset({'aug_smooth'})
    """
    parameters = list(inspect.signature(function).parameters.values())[3:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters)


class ForwardWithArgs(nn.Module):
    """``model(x, *args)`` as a module of one input: what every forward of a method sees when the caller
    gives ``additional_forward_args``.
    """

    def __init__(self, model: nn.Module, args: tuple) -> None:
        super().__init__()
        self.model, self.args = model, args

    def forward(self, x: torch.Tensor, *more: Any, **options: Any) -> Any:
        """The wrapped model on ``x`` followed by the extra arguments."""
        return self.model(x, *more, *self.args, **options)


class MethodAttribution(Attribution):
    """Base of every registered method: the contract of the module docstring.

    Subclasses implement ``_attribute(inputs, labels, **options)`` with ``labels`` a checked (N,) long
    tensor on the inputs' device, and return the attributions (or ``(attributions, delta)`` when asked for
    a convergence delta). A method whose own forward yields the logits (Top-GAP CAM) sets
    ``target_from_own_forward = True``: it then receives ``target`` as given and resolves it with
    :func:`resolve_labels` on those logits, saving a forward. A method that passes
    ``additional_forward_args`` to its library itself (Captum's classes) sets ``native_forward_args``.
    """

    method_name = "method"
    target_from_own_forward = False
    native_forward_args = False
    takes_forward_args = True
    _attribute: Callable[..., Any]  # (inputs, labels, **options) -> attributions, per method

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        if layer is not None:
            raise ValueError(f"`layer` is not used by the pixel method {self.method_name!r}; leave it None.")
        super().__init__(model)
        self.model = model
        self._network: nn.Module = model
        self._extra: tuple = ()
        self._num_classes: int | None = None

    @property
    def network(self) -> nn.Module:
        """What the method's forwards call: the model, with the caller's ``additional_forward_args`` bound (the
        label probe and the layer trace use it; Captum's classes get the arguments natively instead).
        """
        return self._network

    @log_usage()
    def attribute(self, inputs: torch.Tensor | tuple[torch.Tensor], target: TargetType = None,
                  additional_forward_args: Any = None, **options: Any) -> Any:
        """Attributions of ``target`` (class indices; ``None`` = predicted class) for ``inputs`` (N, C, H, W).

        Gradients are enabled inside, so a caller's ``torch.no_grad()`` (NoiseTunnel's) does not break
        gradient methods.
        """
        images, as_tuple = unwrap_inputs(inputs)
        inputs = check_images(images, self.model).detach()
        self._check_options(options)
        extra = () if additional_forward_args is None else (
            additional_forward_args if isinstance(additional_forward_args, tuple) else (additional_forward_args,))
        with model_lock(self.model), preserved_state(self.model), torch.enable_grad(), self.bound(extra):
            labels = target if self.target_from_own_forward else self.labels(inputs, target)
            if self.native_forward_args and extra:
                options["additional_forward_args"] = extra
            result = self._attribute(inputs, labels, **options)
        attributions, delta = result if isinstance(result, tuple) else (result, None)
        attributions = self._checked_output(attributions.to(inputs.dtype), inputs)
        attributions = (attributions,) if as_tuple else attributions
        return attributions if delta is None else (attributions, delta)

    def _checked_output(self, attributions: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The maps in the inputs' dtype; NaN or Inf anywhere is an error, never a silent result."""
        if not all_finite(attributions):
            hint = (f"{inputs.dtype} overflowed: run the model and inputs in float32"
                    if inputs.dtype in (torch.float16, torch.bfloat16) else "check that the model's outputs are finite")
            raise FloatingPointError(f"{self.method_name!r} gave NaN or Inf attributions; {hint}.")
        return attributions

    @contextmanager
    def bound(self, extra: tuple) -> Iterator[None]:
        """Bind ``additional_forward_args`` for the block: :attr:`network` calls ``model(x, *extra)``."""
        if extra and not self.takes_forward_args:
            raise ValueError(f"`additional_forward_args` is not supported by {self.method_name!r}: its network "
                             "calls the model with the image alone.")
        self._extra = extra
        self._network = ForwardWithArgs(self.model, extra) if extra else self.model
        try:
            yield
        finally:
            self._network, self._extra = self.model, ()

    def _check_options(self, options: dict[str, Any]) -> None:
        """Refuse per-call options the method does not take (and a convergence delta it cannot give)."""
        if "return_convergence_delta" in options:
            wanted = check_bool(options.pop("return_convergence_delta"), "return_convergence_delta")
            if wanted and not self.has_convergence_delta():
                raise ValueError(f"`return_convergence_delta` is not available for {self.method_name!r}: it has no "
                                 "convergence delta (integrated gradients, DeepLift and GradientShap do).")
            if wanted:
                options["return_convergence_delta"] = True
        accepted = self.accepted_options()
        unknown = sorted(set(options) - accepted) if accepted is not None else []
        if unknown:
            raise ValueError(f"{self.method_name!r} does not take the option(s) {unknown}; it takes "
                             f"{sorted(accepted or ()) or 'none'}.")

    def accepted_options(self) -> frozenset[str] | None:
        """Names of the per-call options ``attribute`` accepts (``None``: whatever the library accepts)."""
        return named_options(type(self).core if isinstance(self, LayerMethod) else type(self)._attribute)

    def labels(self, inputs: torch.Tensor, target: TargetType) -> torch.Tensor:
        """``target`` as one class index per image (one forward without gradients when it must be read)."""
        def logits() -> torch.Tensor:
            with torch.no_grad():
                out = class_scores(self.network(inputs if target is None else inputs[:1]))
            self._num_classes = out.shape[1]
            return out

        return resolve_labels(target, inputs.shape[0], logits, self._num_classes).to(inputs.device)


LAYER_OPTIONS = ("upsample", "input_size", "reshape_transform")
"""What every :class:`LayerMethod` takes at construction beside ``layer`` (``get_method``'s own argument) and its
method's options."""


class LayerMethod(MethodAttribution):
    """A CAM over one layer: ``core(inputs, labels)`` gives (N, 1, h, w) at the layer's resolution, detached
    unless the core is asked to keep its graph; ``attribute`` upsamples it to the input (``upsample=False``:
    the layer's resolution). Subclasses define ``core(inputs, labels, **options)`` and read the layer with
    :meth:`activations` (which applies ``reshape_transform``).

    ``layer`` is a module or its dotted name; ``None`` picks the last module with a spatial output — for a
    timm vision transformer the last block's ``norm1``, with the reshape of its patch tokens to their grid —
    found by tracing one forward at the size the images have: ``input_size`` (C, H, W) when given, else the
    first images explained. Which layer that is never depends on the order of calls: reading ``.layer``
    before any call without ``input_size`` traces a probe of the model's own size (:func:`example_input`) and
    reports a provisional choice, which the first call confirms at its images' size — or replaces, with a
    warning naming both layers. ``.layer`` and ``.layer_name`` expose the choice. The first call also checks
    the layer's output at its images' size. ``reshape_transform`` maps the layer's output to (N, C, h, w)
    before any check (transformers: (N, tokens, C) -> (N, C, h, w)).
    """

    supports_reshape = True

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, upsample: bool = True,
                 input_size: tuple[int, int, int] | None = None, reshape_transform: Reshape | None = None) -> None:
        super().__init__(model)
        if reshape_transform is not None and not callable(reshape_transform):
            raise ValueError(f"`reshape_transform` must be a function (N, tokens, C) -> (N, C, h, w), got "
                             f"{type(reshape_transform).__name__}.")
        if reshape_transform is not None and not self.supports_reshape:
            raise ValueError(f"`reshape_transform` is not supported by {self.method_name!r}; use 'gradcam' or "
                             "'differentiable_gradcam' for transformer layers.")
        self.upsample = check_bool(upsample, "upsample")
        self.input_size = None if input_size is None else check_input_size(input_size)
        self.reshape_transform = reshape_transform
        self._layer = None if layer is None else resolve_layer(model, layer)
        self._provisional = False
        self._checked = False
        self.layer_positions = 0

    @property
    def layer(self) -> nn.Module:
        """The explained layer; before any call without ``input_size``, the provisional choice at a probe."""
        if self._layer is None:
            probe = self._probe()
            try:
                self._layer = self._choose(probe)
            except (RuntimeError, AssertionError) as error:
                raise ValueError(f"could not trace the model with a {tuple(probe.shape)} probe to find its layer "
                                 f"({str(error).strip() or type(error).__name__}); pass input_size=(C, H, W) of "
                                 "your images, or call attribute() first: its images are traced instead.") from error
            self._provisional = self.input_size is None
        return self._layer

    @property
    def layer_name(self) -> str:
        """The layer's dotted name in the model."""
        return self._name(self.layer)

    def _name(self, layer: nn.Module) -> str:
        return next(name for name, module in self.model.named_modules() if module is layer)

    def _probe(self) -> torch.Tensor:
        """One dummy image of ``input_size`` (else the model's own size) in the model's dtype."""
        probe = example_input(self.model, self.input_size)
        return probe.to(model_dtype(self.model) or probe.dtype)

    def _choose(self, example: torch.Tensor) -> nn.Module:
        """The default layer for images of ``example``'s size: one traced forward (none for a transformer)."""
        return (vit_norm1(self.model) or default_layer(self.network, example))[1]

    def _bind(self, example: torch.Tensor) -> None:
        """At the first call: choose the default layer at the images' size (``input_size`` when given) unless a
        layer was given, and check its output on ``example``, one of the images, with one traced forward.
        """
        if self._layer is None or self._provisional:
            chosen = self._choose(example if self.input_size is None else self._probe())
            if self._layer is not None and chosen is not self._layer:
                warnings.warn(f"`.layer` was read before any call and reported {self._name(self._layer)!r} for a "
                              f"{tuple(self._probe().shape[-2:])} probe; at the {tuple(example.shape[-2:])} "
                              f"images explained the default layer is {self._name(chosen)!r}, which is used. "
                              "Pass input_size=(C, H, W) to fix the choice before the first call.", stacklevel=5)
            self._layer, self._provisional = chosen, False
        tokens = transformer_reshape(self.model, self._layer)
        if tokens is not None and not self.supports_reshape:
            raise ValueError(f"{self.method_name!r} cannot reshape a transformer's tokens to their grid; use "
                             "'gradcam' or 'differentiable_gradcam', which take reshape_transform.")
        if self.reshape_transform is None:
            self.reshape_transform = tokens
        height, width = layer_shape(self.network, self._layer, example, self.reshape_transform)
        self.layer_positions = height * width
        if height * width == 1:
            warnings.warn(f"the layer {type(self._layer).__name__} has a 1 × 1 output for {tuple(example.shape[-2:])} "
                          "inputs: every map will be constant; use larger inputs or an earlier layer.", stacklevel=5)
        self._checked = True

    def activations(self, output: torch.Tensor) -> torch.Tensor:
        """The layer's output as (N, C, h, w): ``reshape_transform`` applied when there is one."""
        return self.reshape_transform(output) if self.reshape_transform is not None else output

    core: Callable[..., torch.Tensor]  # (inputs, labels, **options) -> (N, 1, h, w) at the layer, per method

    def _attribute(self, inputs: torch.Tensor, labels: torch.Tensor, **options: Any) -> torch.Tensor:
        if not self._checked:
            self._bind(inputs[:1])
        maps = self.core(inputs, labels, **options)
        empty = maps.flatten(1).abs().amax(1) == 0
        if bool(empty.any()) and self.layer_positions > 1:
            warnings.warn(f"{self.method_name!r} gave a map that is zero everywhere for some images: no positive "
                          "evidence for the target at this layer (see the collapse diagnostic, docs/reff.md).",
                          stacklevel=4)
        return upsample_to(maps, inputs.shape[-2:]) if self.upsample else maps

"""Method registry: one name space over Captum, pytorch-grad-cam and the plugin's own methods.

A method is a factory ``factory(model, layer=None, **kwargs) -> captum.attr.Attribution``. Names are
case-insensitive and ignore ``-``, ``_`` and spaces (``grad-cam`` = ``GradCAM`` = ``gradcam``; ``++`` is
read as ``plusplus``). Third-party packages add methods with :func:`register_method` or through the
entry-point group ``captum_topgap.methods`` (entry-point name = method name, object = factory).

Example:
    >>> import torch, captum_topgap
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
    ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> "gradcam" in captum_topgap.list_methods()
    True
    >>> explainer = captum_topgap.get_method("Grad-CAM", model)
    >>> explainer.attribute(torch.rand(2, 3, 8, 8), target=1).shape
    torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from torch import nn

from captum_topgap._checks import check_keywords

ENTRY_POINT_GROUP = "captum_topgap.methods"
_BUILTIN_MODULES = ("captum_topgap.methods", "captum_topgap.adapters.captum", "captum_topgap.adapters.grad_cam")
"""Loaded by name on first use, like entry points: this project's methods and the two libraries' adapters."""

Factory = Callable[..., Any]


@dataclass
class MethodSpec:
    """What the registry knows of one method.

    ``kind`` is ``"pixel"`` (input-shaped attributions), ``"layer"`` (a CAM over a layer, returned as
    (N, 1, H, W)) or ``"model"`` (a CAM the model computes itself, such as Top-GAP).
    """

    name: str
    factory: Factory | None
    origin: str
    description: str
    kind: str = "pixel"
    aliases: tuple[str, ...] = ()
    entry_point: Any = field(default=None, repr=False)

    def load(self) -> Factory:
        """The factory, importing an entry point on first use."""
        if self.factory is None:
            self.factory = self.entry_point.load()
            doc = (getattr(self.factory, "__doc__", None) or "").strip()
            self.description = self.description or (doc.splitlines()[0] if doc else "")
        return self.factory


_REGISTRY: dict[str, MethodSpec] = {}
_KEYS: dict[str, str] = {}
_COMPOSITIONS: dict[str, Factory] = {}
_loaded = False


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower()).replace("++", "plusplus")


def _add(spec: MethodSpec, replace: bool = False) -> None:
    for alias in (spec.name, *spec.aliases):
        owner = _KEYS.get(_key(alias))
        if owner is not None and owner != spec.name:
            raise ValueError(f"method name {alias!r} is already registered by {owner!r}; choose another name.")
    existing = _REGISTRY.get(spec.name)
    if existing is not None and not replace and _same_source(existing.factory, spec.factory):
        return  # the same file imported under a second module name (a checkout's top-level ``adapters``)
    if existing is not None and not replace and existing.factory is not spec.factory:
        raise ValueError(f"method name {spec.name!r} is already registered (origin {existing.origin!r}); choose "
                         "another name, or pass replace=True to replace it for the whole process.")
    _REGISTRY[spec.name] = spec
    for alias in (spec.name, *spec.aliases):
        _KEYS[_key(alias)] = spec.name


def _same_source(first: Factory | None, second: Factory | None) -> bool:
    """Two factories defined by the same code: the same qualified name in the same file."""
    code_a, code_b = getattr(first, "__code__", None), getattr(second, "__code__", None)
    return (code_a is not None and code_b is not None
            and getattr(first, "__qualname__", None) == getattr(second, "__qualname__", None)
            and Path(code_a.co_filename).resolve() == Path(code_b.co_filename).resolve())


def register_method(name: str, *, origin: str = "third-party", description: str | None = None,
                    kind: str = "pixel", aliases: tuple[str, ...] = (),
                    replace: bool = False) -> Callable[[Factory], Factory]:
    """Decorator that registers ``factory(model, layer=None, **kwargs) -> Attribution`` under ``name``.

    A name (or alias) that is already registered is refused; ``replace=True`` replaces a method of the same
    name — a built-in included — for the whole process.

    Example:
        >>> from captum.attr import Saliency
        >>> @register_method("my_saliency", description="plain gradients")
        ... def my_saliency(model, layer=None, **kwargs):
        ...     return Saliency(model)
        >>> "my_saliency" in list_methods()
        True
    """
    if kind not in ("pixel", "layer", "model"):
        raise ValueError(f"`kind` must be 'pixel', 'layer' or 'model', got {kind!r}.")
    if not isinstance(replace, bool):
        raise ValueError(f"`replace` must be True or False, got {replace!r}.")

    def decorate(factory: Factory) -> Factory:
        if not (getattr(factory, "__module__", None) or "").startswith("captum_topgap."):
            _load()  # the built-ins first, so that a clash is reported here and not while they load
        doc = (factory.__doc__ or "").strip()
        text = description if description is not None else (doc.splitlines()[0] if doc else "")
        _add(MethodSpec(name, factory, origin, text, kind, tuple(aliases)), replace)
        return factory

    return decorate


def register_composition(prefix: str) -> Callable[[Factory], Factory]:
    """Decorator: ``get_method("PREFIX:NAME", model, layer, **options)`` calls
    ``factory(NAME, model, layer, **options)`` (``"smooth:gradcam++"`` is Captum's NoiseTunnel over gradcam++).

    Example:
        >>> @register_composition("twice")
        ... def twice(inner, model, layer=None, **options):
        ...     return [get_method(inner, model, layer, **options)] * 2
        >>> import torch
        >>> len(get_method("twice:saliency", torch.nn.Linear(2, 2)))
        2
    """
    def decorate(factory: Factory) -> Factory:
        _COMPOSITIONS[_key(prefix)] = factory
        return factory

    return decorate


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if _key(ep.name) not in _KEYS:
            dist = getattr(ep, "dist", None)
            origin = dist.name if dist is not None else "entry point"
            _add(MethodSpec(ep.name, None, origin, "", "pixel", (), ep))


def list_methods() -> list[str]:
    """Sorted names of every registered method.

    Example:
        >>> {"saliency", "gradcam", "layer_gradcam"} <= set(list_methods())
        True
    """
    _load()
    return sorted(_REGISTRY)


def method_spec(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``name`` (aliases accepted); unknown names list the closest ones.

    Example:
        >>> method_spec("gradcam_plus_plus").name
        'gradcam++'
    """
    _load()
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a method name (str), got {type(name).__name__}; see list_methods().")
    canonical = _KEYS.get(_key(name))
    if canonical is None:
        close = difflib.get_close_matches(_key(name), list(_KEYS), n=5, cutoff=0.5)
        suggestions = sorted({_KEYS[k] for k in close})
        raise ValueError(f"unknown method {name!r}; closest names: {suggestions}. "
                         "See captum_topgap.list_methods() or `captum-topgap methods`.")
    return _REGISTRY[canonical]


def canonical_name(name: str) -> str:
    """The registered spelling of a method name, an alias or a ``PREFIX:NAME`` composition; an unknown one
    raises the error :func:`get_method` would.

    Example:
        >>> canonical_name("gradcam_plus_plus"), canonical_name("Smooth:GradCAM_plus_plus")
        ('gradcam++', 'smooth:gradcam++')
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a method name (str), got {type(name).__name__}; see list_methods().")
    prefix, composed, inner = name.partition(":")
    if not composed:
        return method_spec(name).name
    _load()
    if _key(prefix) not in _COMPOSITIONS:
        raise ValueError(f"unknown composition {prefix!r} in {name!r}; known: "
                         f"{sorted(p + ':NAME' for p in _COMPOSITIONS)}")
    if ":" in inner:
        example = f"{prefix}:{inner.split(':')[-1]}"
        raise ValueError(f"compositions do not nest: {name!r}; use one prefix, e.g. {example!r}.")
    return f"{_key(prefix)}:{canonical_name(inner)}"


def get_method(name: str, model: nn.Module, layer: nn.Module | str | None = None, **kwargs: Any) -> Any:
    """Build the attribution method ``name`` for ``model`` (and ``layer`` for layer methods).

    ``"smooth:NAME"`` composes Captum's NoiseTunnel (SmoothGrad) over NAME; ``nt_samples``, ``stdevs`` and
    ``nt_samples_batch_size`` go to the tunnel, every other option to NAME.

    Layer methods with ``layer=None`` pick the last module with a spatial output (see
    :func:`captum_topgap._layers.default_layer`, traced on the first input) and expose it as ``.layer`` /
    ``.layer_name``.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1),
        ...                           torch.nn.Flatten())
        >>> get_method("saliency", net).attribute(torch.rand(1, 3, 6, 6), target=0).shape
        torch.Size([1, 3, 6, 6])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    prefix, composed, inner = canonical_name(name).partition(":")
    if composed:
        return _COMPOSITIONS[prefix](inner, model, layer, **kwargs)
    factory = method_spec(prefix).load()
    check_keywords(factory, kwargs, f"{factory.__name__}.__init__()" if isinstance(factory, type) else f"{prefix!r}",
                   filled={"model": "model", "layer": "layer"})
    return factory(model, layer=layer, **kwargs)

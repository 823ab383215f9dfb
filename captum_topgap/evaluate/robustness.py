"""Robust accuracy under L∞ attacks run by existing engines: PGD by Foolbox, Square and APGD by ART.

The core never imports an engine; ``captum_topgap.adapters.foolbox`` and ``captum_topgap.adapters.art``
do, behind one signature ``attack(model, inputs, labels, eps, steps, bounds, preprocessing, seed)``.
:mod:`captum_topgap.evaluate.audit` combines these attacks into a gradient-masking audit.

Robust accuracy counts a sample as robust when it is classified correctly both clean and after the
attack (so it never exceeds the clean accuracy); only correctly classified samples are attacked.

``region="background"`` (or ``"object"``) restricts the perturbation to the pixels outside (inside) the
mask with :class:`RegionModel`, a model wrapper that composites the attacked pixels over the clean
image: x̃ = x₀ + a ⊙ (x − x₀) with a the allowed region. Both engines then attack that wrapper, and the
returned adversarial images are composited the same way.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    >>> x, y = torch.rand(8, 3, 4, 4), torch.zeros(8, dtype=torch.long)
    >>> robust_accuracy(net, x, y, "pgd20", eps=0.0) == clean_accuracy(net, x, y)
    True
"""

from __future__ import annotations

import functools
import importlib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Real
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from torch import nn
from tqdm.auto import tqdm

from captum_topgap._checks import check_dtype, check_float, check_int
from captum_topgap._distributed import all_sum, is_main
from captum_topgap._state import preserved_state
from captum_topgap.evaluate.metrics import predict

EPS = 8 / 255
SQUARE_QUERIES = 1000
APGD_STEPS = 100
_ENGINES: dict[str, tuple[str, str, dict[str, str]]] = {
    "pgd": ("captum_topgap.adapters.foolbox", "attack", {}),
    "square": ("captum_topgap.adapters.art", "square", {}),
    "apgd_ce": ("captum_topgap.adapters.art", "apgd", {"loss": "apgd_ce"}),
    "apgd_dlr": ("captum_topgap.adapters.art", "apgd", {"loss": "apgd_dlr"})}
_DEFAULT_STEPS = {"pgd": 20, "square": SQUARE_QUERIES, "apgd_ce": APGD_STEPS, "apgd_dlr": APGD_STEPS}
_KNOWN = "'pgd', 'pgd20', 'pgd50', 'square', 'square<N>', 'apgd_ce<N>' or 'apgd_dlr<N>'"
_REGIONS = (None, "all", "background", "object")


@dataclass(frozen=True)
class AttackSpec:
    """An attack by name: ``"pgd20"`` = PGD with 20 steps, ``"square"`` = Square with its default queries,
    ``"apgd_dlr50"`` = APGD on the DLR loss with 50 iterations.

    Example:
        >>> AttackSpec.parse("pgd50"), AttackSpec.parse("square").steps
        (AttackSpec(kind='pgd', steps=50), 1000)
    """

    kind: str
    steps: int

    @classmethod
    def parse(cls, name: str, steps: int | None = None) -> AttackSpec:
        """The attack of a name; ``steps`` (≥ 1) when the name carries no number.

        Example:
            >>> AttackSpec.parse("pgd0")
            Traceback (most recent call last):
            ...
            ValueError: `steps` must be an integer ≥ 1, got 0 in attack='pgd0'; use e.g. 'pgd20'.
        """
        if not isinstance(name, str):
            raise TypeError(f"`attack` must be a name such as {_KNOWN}, got {type(name).__name__} {name!r}.")
        match = re.fullmatch(r"(pgd|square|apgd_ce|apgd_dlr)(\d*)", name.strip().lower().replace("-", "_"))
        if match is None:
            raise ValueError(f"attack={name!r} is not known; use {_KNOWN}")
        kind, digits = match.groups()
        if digits:
            if int(digits) < 1:
                raise ValueError(f"`steps` must be an integer ≥ 1, got {int(digits)} in attack={name!r}; use e.g. "
                                 f"'{kind}{_DEFAULT_STEPS[kind]}'.")
            return cls(kind, int(digits))
        return cls(kind, _DEFAULT_STEPS[kind] if steps is None else check_int(steps, "steps", minimum=1))

    @property
    def name(self) -> str:
        """``pgd20``, ``square1000``: the name that reads back to this attack."""
        return f"{self.kind}{self.steps}"


def normalize(images: torch.Tensor, preprocessing: Mapping[str, Any] | None) -> torch.Tensor:
    """(x − mean) / std per channel, Foolbox's ``preprocessing=dict(mean=…, std=…)`` on channel axis 1.

    Example:
        >>> normalize(torch.ones(1, 3, 1, 1), {"mean": [0.5] * 3, "std": [0.25] * 3}).flatten().tolist()
        [2.0, 2.0, 2.0]
    """
    if not preprocessing:
        return images
    mean, std = check_preprocessing(preprocessing, images.shape[1])
    return TF.normalize(images, mean, std)


def check_preprocessing(preprocessing: Mapping[str, Any], channels: int) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) of Foolbox's ``preprocessing=dict(mean=…, std=…)``: one value or one per channel
    each, finite, std > 0; any other key is refused by name.

    Example:
        >>> check_preprocessing({"mu": 0.5}, 3)
        Traceback (most recent call last):
        ...
        ValueError: `preprocessing` takes the keys 'mean' and 'std' (Foolbox's), got 'mu'.
    """
    if not isinstance(preprocessing, Mapping):
        raise ValueError(f"`preprocessing` must be dict(mean=..., std=...), got {type(preprocessing).__name__}.")
    unknown = sorted(set(preprocessing) - {"mean", "std"})
    if unknown:
        raise ValueError(f"`preprocessing` takes the keys 'mean' and 'std' (Foolbox's), got "
                         f"{', '.join(map(repr, unknown))}.")
    values = []
    for key, default in (("mean", 0.0), ("std", 1.0)):
        try:
            value = torch.as_tensor(preprocessing.get(key, default), dtype=torch.float64).flatten()
        except (TypeError, ValueError, RuntimeError):
            value = torch.tensor([math.nan])
        if len(value) not in (1, channels) or not torch.isfinite(value).all() or (key == "std" and (value <= 0).any()):
            raise ValueError(f"`preprocessing['{key}']` must be one finite number or {channels} (one per channel)"
                             f"{', each > 0' if key == 'std' else ''}, got {preprocessing.get(key)!r}.")
        values.append(value.expand(channels).tolist())
    return values[0], values[1]


def allowed_region(region: str | None, masks: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The float map a of pixels the attack may change: 1 everywhere, 1 − mask ("background") or mask ("object").

    Example:
        >>> allowed_region("background", torch.tensor([[[[True, False]]]]), torch.zeros(1, 3, 1, 2)).tolist()
        [[[[0.0, 1.0]]]]
    """
    if region not in _REGIONS:
        raise ValueError(f"region={region!r} is not known; use None, 'background' or 'object'")
    if region in (None, "all"):
        return torch.ones_like(like[:, :1])
    if masks is None:
        raise ValueError(f"region={region!r} needs masks=: a (N, 1, H, W) boolean tensor of the object")
    if masks.shape[0] != like.shape[0] or masks.shape[-2:] != like.shape[-2:] or masks.dim() != 4:
        raise ValueError(f"masks must have shape (N, 1, H, W) = ({like.shape[0]}, 1, {like.shape[-2]}, "
                         f"{like.shape[-1]}), got {tuple(masks.shape)}")
    inside = masks.to(like.device).bool()[:, :1].to(like.dtype)
    return inside if region == "object" else 1 - inside


class RegionModel(nn.Module):
    """``model(x₀ + a ⊙ (x − x₀))``: an attack on this wrapper can change only the allowed pixels a.

    Each query row is matched to the clean image it was derived from by L∞ distance (an L∞ attack keeps
    every row within ``radius`` of its clean image), so engines that query subsets of the batch, as ART's
    Square attack does, work as well as Foolbox's full batches.

    Args:
        model: the classifier.
        clean: (N, C, H, W) clean images, in the space the wrapper receives (after any preprocessing).
        allowed: (N, 1, H, W) float map of changeable pixels.
        radius: the largest per-pixel distance of a query from its clean image in that space.

    Example:
        >>> net = torch.nn.Flatten()
        >>> clean, allowed = torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 0.0]]]])
        >>> RegionModel(net, clean, allowed, radius=0.1)(torch.full((1, 1, 1, 2), 0.1)).tolist()
        [[0.10000000149011612, 0.0]]
    """

    clean: torch.Tensor
    allowed: torch.Tensor

    def __init__(self, model: nn.Module, clean: torch.Tensor, allowed: torch.Tensor, radius: float) -> None:
        super().__init__()
        self.model, self.radius, self.checked = model, float(radius), True
        self.register_buffer("clean", clean.detach())
        self.register_buffer("allowed", allowed.detach())
        with torch.no_grad():
            distance = torch.cdist(self.clean.flatten(1), self.clean.flatten(1), p=float("inf"))
            regions_differ = (self.allowed.flatten(1)[:, None] != self.allowed.flatten(1)[None]).any(-1)
        if ((distance <= 2 * self.radius) & regions_differ).any():
            raise ValueError("two inputs of one batch lie within 2·eps of each other but have different masks; "
                             "attack them in separate batches")

    def composite(self, x: torch.Tensor) -> torch.Tensor:
        """x₀ + a ⊙ (x − x₀) for each row's own clean image x₀ and region a."""
        with torch.no_grad():
            distance, source = torch.cdist(x.detach().flatten(1), self.clean.flatten(1), p=float("inf")).min(1)
        if self.checked and (distance > self.radius + 1e-4).any():
            raise RuntimeError(f"the attack moved an input {distance.max().item():.4g} from every clean image, "
                               f"more than eps ({self.radius:.4g}); the engine broke its L∞ budget")
        clean, allowed = self.clean[source], self.allowed[source]
        return clean + allowed * (x - clean)

    @contextmanager
    def unchecked(self) -> Iterator[None]:
        """Queries beyond ``radius`` allowed inside: for an engine's probe outside any attack, such as the image
        of ones with which ART's APGD tells logits from probabilities.
        """
        self.checked = False
        try:
            yield
        finally:
            self.checked = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits of the composited images."""
        return self.model(self.composite(x))


def check_attack_inputs(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, eps: float,
                        bounds: tuple[float, float]) -> float:
    """The arguments every attack entry point shares, each pitfall refused with its fix: images that are not
    (N, C, H, W), not in the model's dtype (:func:`~captum_topgap._checks.check_dtype`) or outside ``bounds``; a
    budget outside [0, high − low] (:func:`check_budget`); labels not (N,) indices. Returns ``eps`` as a float.

    Example:
        >>> check_attack_inputs(torch.nn.Flatten(), torch.full((1, 3, 2, 2), -1.0), torch.zeros(1, dtype=torch.long),
        ...                     8 / 255, (0, 1))
        Traceback (most recent call last):
        ...
        ValueError: inputs lie outside bounds=(0, 1) (min -1, max -1): pass images in [0, 1] and the \
normalisation as preprocessing=dict(mean=..., std=...) instead of normalised tensors
    """
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise ValueError(f"inputs must be a (N, C, H, W) tensor, got {getattr(inputs, 'shape', type(inputs))}")
    check_dtype(inputs, model)
    low, high = check_bounds(bounds)
    eps = check_budget(eps, bounds)
    if inputs.numel() and (inputs.min() < low or inputs.max() > high):
        raise ValueError(f"inputs lie outside bounds={tuple(bounds)} (min {inputs.min().item():.4g}, max "
                         f"{inputs.max().item():.4g}): pass images in [{low}, {high}] and the normalisation as "
                         "preprocessing=dict(mean=..., std=...) instead of normalised tensors")
    if not isinstance(labels, torch.Tensor) or labels.shape != (inputs.shape[0],) or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be integer class indices of shape ({inputs.shape[0]},), got {shape}; "
                         "for one-hot labels pass labels.argmax(1)")
    return eps


def check_budget(eps: object, bounds: tuple[float, float], name: str = "eps") -> float:
    """An L∞ budget in [0, high − low]: ε is in the images' units, those of ``bounds``, whatever the
    ``preprocessing`` (both engines apply it inside the model they attack), and a budget larger than the
    range moves every pixel anywhere, as an ε of 8 meant as 8/255 would, silently.

    Example:
        >>> check_budget(8, (0.0, 1.0))
        Traceback (most recent call last):
        ...
        ValueError: `eps`=8 is larger than the images' range [0, 1] (eps is in the units of `bounds`, before \
`preprocessing`); for 8/255 in pixel units pass eps=8/255 ≈ 0.0314.
    """
    low, high = check_bounds(bounds)
    budget = check_float(eps, name, minimum=0.0)
    width = high - low
    if budget > width:
        scale = "" if width == 1 else f"·{width:g}"
        raise ValueError(f"`{name}`={budget:g} is larger than the images' range [{low:g}, {high:g}] (eps is in the "
                         f"units of `bounds`, before `preprocessing`); for {budget:g}/255 in pixel units pass "
                         f"{name}={budget:g}/255{scale} ≈ {budget / 255 * width:.4f}.")
    return budget


def check_bounds(bounds: object) -> tuple[float, float]:
    """The valid input range ``(low, high)``: two finite numbers with low < high.

    Example:
        >>> check_bounds((1.0, 0.0))
        Traceback (most recent call last):
        ...
        ValueError: `bounds` must be (low, high) with finite low < high, e.g. (0.0, 1.0), got (1.0, 0.0).
    """
    values = list(bounds) if isinstance(bounds, Sequence) and not isinstance(bounds, str) else []
    numbers = len(values) == 2 and all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
                                       for v in values)
    if not numbers or not values[0] < values[1]:
        raise ValueError(f"`bounds` must be (low, high) with finite low < high, e.g. (0.0, 1.0), got {bounds!r}.")
    return values[0], values[1]


def predict_normalised(model: nn.Module, images: torch.Tensor, preprocessing: Mapping[str, Any] | None,
                       batch_size: int = 64) -> torch.Tensor:
    """argmax_c f(normalize(x))_c per image, in batches (model in eval mode, its state restored).

    Example:
        >>> predict_normalised(torch.nn.Flatten(), torch.tensor([[[[0.0, 1.0]]]]), None).tolist()
        [1]
    """
    return predict(model, images, batch_size, lambda chunk: normalize(chunk, preprocessing))


def clean_accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                   preprocessing: Mapping[str, Any] | None = None, batch_size: int = 64) -> float:
    """Share of ``inputs`` classified as ``labels`` (model in eval mode, its state restored).

    Example:
        >>> clean_accuracy(torch.nn.Flatten(), torch.tensor([[[[0.0, 1.0]]]]), torch.tensor([1]))
        1.0
    """
    if not isinstance(labels, torch.Tensor) or labels.shape != (len(inputs),) or labels.is_floating_point():
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"`labels` must be integer class indices of shape ({len(inputs)},), one per image, got "
                         f"{shape}.")
    check_label_range(model, inputs, labels, preprocessing)
    predictions = predict_normalised(model, inputs, preprocessing, batch_size)
    return (predictions == labels.to(inputs.device)).float().mean().item()


def check_label_range(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                      preprocessing: Mapping[str, Any] | None) -> None:
    """Labels in [0, C) for the model's C classes (one image's forward tells C), else an error naming both.

    Example:
        >>> check_label_range(torch.nn.Flatten(), torch.zeros(1, 1, 1, 2), torch.tensor([2]), None)
        Traceback (most recent call last):
        ...
        ValueError: `labels` must be class indices in [0, 2) for this model's 2 classes, got 2.
    """
    if not len(labels):
        return
    with preserved_state(model), torch.no_grad():
        classes = model(normalize(inputs[:1], preprocessing)).shape[-1]
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise ValueError(f"`labels` must be class indices in [0, {classes}) for this model's {classes} classes, "
                         f"got {low if low < 0 else high}.")


def adversarial_examples(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, attack: str = "pgd",
                         eps: float = EPS, steps: int | None = None, region: str | None = None,
                         masks: torch.Tensor | None = None, bounds: tuple[float, float] = (0.0, 1.0),
                         preprocessing: Mapping[str, Any] | None = None, seed: int = 0) -> torch.Tensor:
    """Adversarial images x_adv with ‖x_adv − x‖∞ ≤ eps, changed only inside the allowed ``region``.

    Args:
        model: classifier on normalised images (the normalisation goes in ``preprocessing``).
        inputs: (N, C, H, W) images within ``bounds``.
        labels: (N,) class indices.
        attack: ``"pgd"``/``"pgd20"``/``"pgd50"`` (Foolbox ``LinfPGD``, random start, step 0.25·eps),
            ``"square"``/``"square<N>"`` (ART ``SquareAttack``, L∞, N iterations) or ``"apgd_ce<N>"`` /
            ``"apgd_dlr<N>"`` (ART ``AutoProjectedGradientDescent`` on the cross-entropy / DLR loss).
        eps: L∞ budget in input units.
        steps: iterations when the name carries none.
        region: None (all pixels), ``"background"`` (1 − mask) or ``"object"`` (mask).
        masks: (N, 1, H, W) object masks, needed for a region.
        bounds: the valid input range; the engines clip to it.
        preprocessing: ``dict(mean=…, std=…)`` applied inside the attacked model.
        seed: seeds the engine's randomness (random start, square positions) without touching global state.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> x = torch.rand(2, 3, 2, 2)
        >>> adv = adversarial_examples(net, x, torch.tensor([0, 1]), "pgd5", eps=0.1)
        >>> bool((adv - x).abs().max() <= 0.1 + 1e-6)
        True
    """
    spec = AttackSpec.parse(attack, steps)
    eps = check_attack_inputs(model, inputs, labels, eps, bounds)
    allowed = allowed_region(region, masks, inputs)
    if eps == 0 or len(inputs) == 0:
        return inputs.clone()
    std = torch.as_tensor((preprocessing or {}).get("std", 1.0), dtype=torch.float64)
    radius = eps / float(std.min())
    with preserved_state(model):
        target = RegionModel(model, normalize(inputs, preprocessing), allowed, radius).eval()
        raw = _engine(spec.kind)(target, inputs, labels.to(inputs.device), eps=eps, steps=spec.steps, bounds=bounds,
                                 preprocessing=preprocessing, seed=seed)
    return (inputs + allowed * (raw.to(inputs) - inputs)).detach()


def _engine(kind: str) -> Callable[..., torch.Tensor]:
    module, function, options = _ENGINES[kind]
    try:
        return functools.partial(getattr(importlib.import_module(module), function), **options)
    except ImportError as error:
        package = "foolbox" if kind == "pgd" else "adversarial-robustness-toolbox"
        raise ImportError(f"attack {kind!r} needs {package}: pip install {package}") from error


def robust_accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, attack: str = "pgd",
                    eps: float = EPS, steps: int | None = None, region: str | None = None,
                    masks: torch.Tensor | None = None, bounds: tuple[float, float] = (0.0, 1.0),
                    preprocessing: Mapping[str, Any] | None = None, batch_size: int = 64, seed: int = 0) -> float:
    """Share of samples classified correctly both clean and after ``attack`` (see :func:`adversarial_examples`).

    robust accuracy = 1/N Σ_i [f(x_i) = y_i] · [f(x_adv_i) = y_i] ≤ clean accuracy.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 0, 1])
        >>> robust_accuracy(net, x, y, "pgd20", eps=8 / 255) <= clean_accuracy(net, x, y)
        True
    """
    return robust_counts(model, inputs, labels, attack, eps, steps, region, masks, bounds, preprocessing,
                         batch_size, seed)[0].float().mean().item()


def robust_counts(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, attack: str = "pgd",
                  eps: float = EPS, steps: int | None = None, region: str | None = None,
                  masks: torch.Tensor | None = None, bounds: tuple[float, float] = (0.0, 1.0),
                  preprocessing: Mapping[str, Any] | None = None, batch_size: int = 64,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample booleans (robust, clean-correct); attacks only the correctly classified samples.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> robust, correct = robust_counts(net, torch.rand(3, 3, 2, 2), torch.tensor([0, 1, 1]), eps=0.0)
        >>> bool((robust == correct).all())
        True
    """
    AttackSpec.parse(attack, steps)
    check_int(batch_size, "batch_size", minimum=1)
    check_attack_inputs(model, inputs, labels, eps, bounds)
    allowed_region(region, masks, inputs)
    labels = labels.to(inputs.device)
    check_label_range(model, inputs, labels, preprocessing)
    with preserved_state(model):
        correct = predict_normalised(model, inputs, preprocessing, batch_size) == labels
        robust = correct.clone()
        for chunk in torch.arange(len(inputs), device=inputs.device)[correct].split(batch_size):
            if len(chunk) == 0:
                continue
            chunk_masks = None if masks is None else masks[chunk.to(masks.device)]
            adversarial = adversarial_examples(model, inputs[chunk], labels[chunk], attack, eps, steps, region,
                                               chunk_masks, bounds, preprocessing, seed)
            robust[chunk] = predict_normalised(model, adversarial, preprocessing, batch_size) == labels[chunk]
    return robust, correct


def evaluate_robustness(model: nn.Module, loader: Iterable,
                        attacks: str | Sequence[str] = ("pgd20", "pgd50", "square"), eps: float = EPS,
                        region: str | None = None, bounds: tuple[float, float] = (0.0, 1.0),
                        preprocessing: Mapping[str, Any] | None = None, seed: int = 0,
                        progress: bool = True) -> dict[str, float]:
    """Clean and robust accuracy of each attack over a loader of ``Batch`` or ``(images, labels[, masks])``.

    Accuracies are exact sums over all samples divided by the count (not means of batch means); under
    torch.distributed give each rank its shard's loader: the sums and counts are added over the ranks.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        >>> loader = [(torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 0, 1]))]
        >>> sorted(evaluate_robustness(net, loader, ["pgd5"], eps=0.0, progress=False))
        ['clean', 'pgd5']
    """
    attacks = [attacks] if isinstance(attacks, str) else list(attacks)  # one attack may be named alone
    for name in attacks:
        AttackSpec.parse(name)
    check_budget(eps, bounds)
    robust = dict.fromkeys(attacks, 0)
    correct: float = 0
    count: float = 0
    device = next(model.parameters()).device
    bar = tqdm(loader, desc=f"robustness ({region or 'all'} pixels)", disable=not progress or not is_main(),
               leave=False)
    for batch in bar:
        images, labels, masks = _unpack(batch)
        check_attack_inputs(model, images, labels, eps, bounds)
        images, labels = images.to(device), labels.to(device)
        correct += int((predict_normalised(model, images, preprocessing, max(len(images), 1)) == labels).sum())
        for attack in attacks:
            robust[attack] += int(robust_counts(model, images, labels, attack, eps, region=region, masks=masks,
                                                bounds=bounds, preprocessing=preprocessing, seed=seed)[0].sum())
        count += len(labels)
    correct, *totals, count = all_sum([correct, *robust.values(), count])
    if count == 0:
        raise ValueError("`loader` yielded no image: robust accuracy over nothing is undefined; pass a loader of "
                         "(images, labels) batches.")
    return {"clean": correct / max(count, 1), **{name: value / max(count, 1) for name, value in
                                                 zip(robust, totals, strict=True)}}


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if hasattr(batch, "images"):
        return batch.images, batch.labels, batch.masks
    images, labels, *rest = batch
    return images, labels, rest[0] if rest else None

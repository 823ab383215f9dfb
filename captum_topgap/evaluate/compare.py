"""Every method scored side by side on the same images: localisation, faithfulness, sanity and cost.

Per method, on images with a ground-truth mask, from the heat-map of the *true* class (as in
:mod:`captum_topgap.evaluate.heatmaps`: CAMs upsampled, pixel methods Σ_c |a_c|):

- localisation: mask IoU at threshold 0.5, the pointing game and the energy pointing game
  (:mod:`captum_topgap.evaluate.metrics`); and without a fixed threshold (Choe et al. 2020,
  :mod:`captum_topgap.evaluate.wsol`): PxAP over every threshold, MaxBoxAccV2 at each IoU level's best one;
- faithfulness: deletion and insertion AUC (Petsiuk et al. 2018, "RISE"): the softmax probability of the
  class as the most relevant pixels are removed (replaced by 0) or inserted (into a blurred copy) in
  ``steps`` equal steps, area under the curve over the fraction in [0, 1] — lower is better for deletion,
  higher for insertion; pytorch-grad-cam's ``ROADCombined`` (Rong et al. 2022; (LeRF − MoRF) / 2 of the
  softmax probability at 20/40/60/80 %, higher is better); Captum's ``infidelity`` (normalised, the CAM
  map expanded over the channels) and ``sensitivity_max`` of the min-max-scaled map (so that methods of
  different scales compare) — both lower is better;
- sanity: the cascading model-randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency
  Maps"): the parameterised blocks are re-initialised one by one from the output down, and after each
  step the Spearman rank correlation between the trained and the randomised model's maps is averaged over
  the images; ``randomization_similarity`` is its mean over the cascade (1: the maps ignore the weights;
  a method at or above :data:`FLAG_SIMILARITY` is flagged);
- class discrimination (the lecture's "Limitations of Saliency Maps": Grad-CAM's maps for *cat* and *laundry
  basket* are "essentially the same"): per image, 1 − the Pearson correlation of the method's maps for the
  model's top-1 and top-2 predicted classes (:func:`captum_topgap.evaluate.metrics.class_discrimination`),
  averaged — 0: the same map whatever the class, higher is better;
- cost: seconds per image of the first pass and its peak memory (CUDA: peak allocated; Linux CPU: the
  process's peak resident set during the pass, reset before it).

Example:
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> images, masks = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8) > 0.5
    >>> rows = compare(model, images, torch.tensor([0, 1]), masks, ["saliency"], progress=False,
    ...                n_perturb_samples=2)
    >>> sorted(rows["saliency"]) == sorted(COLUMNS + ("flagged", "randomization_cascade"))
    True
"""

from __future__ import annotations

import copy
import ctypes
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from captum.metrics import infidelity, sensitivity_max
from pytorch_grad_cam.metrics.road import ROADCombined
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from scipy.stats import rankdata
from torch import nn
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from captum_topgap._checks import check_images, check_int
from captum_topgap._state import preserved_state
from captum_topgap.attribution import upsample_to
from captum_topgap.evaluate.heatmaps import as_heatmap
from captum_topgap.evaluate.metrics import (
    class_discrimination,
    energy_pointing_game,
    mask_iou,
    normalize_per_image,
    pointing_game,
)
from captum_topgap.evaluate.wsol import mask_boxes, max_box_accuracy, pxap
from captum_topgap.registry import get_method

COLUMNS = ("iou", "pxap", "max_box_acc_v2", "pointing_game", "energy_pointing_game", "deletion_auc", "insertion_auc",
           "road", "infidelity", "sensitivity", "randomization_similarity", "class_discrimination",
           "seconds_per_image", "peak_memory_mb")
"""The keys of every row of :func:`compare` (``results.json``'s ``methods`` table)."""
FLAG_SIMILARITY = 0.5
"""A method whose maps keep this Spearman correlation on average over the randomisation cascade is flagged."""


def perturbation_curve(model: nn.Module, images: torch.Tensor, heatmaps: torch.Tensor, labels: torch.Tensor,
                       mode: str = "deletion", steps: int = 16, batch_size: int = 64) -> torch.Tensor:
    """Softmax probability of ``labels`` as pixels are removed (``"deletion"``: set to 0) or inserted
    (``"insertion"``: into a Gaussian-blurred copy, 11 × 11, σ = 5) from the most relevant down: (N, steps + 1).

    Step t changes the round(t · HW / steps) pixels of highest heat (ties in raster order), every channel.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> perturbation_curve(net, torch.rand(1, 1, 2, 2), torch.rand(1, 1, 2, 2), torch.tensor([0]),
        ...                    steps=2).shape
        torch.Size([1, 3])
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"`mode` must be 'deletion' or 'insertion', got {mode!r}.")
    steps = check_int(steps, "steps", minimum=1)
    n, _, h, w = images.shape
    order = heatmaps.reshape(n, -1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=order.device).expand(n, -1))
    counts = torch.round(torch.arange(steps + 1, device=images.device) * (h * w / steps))
    changed = (rank[:, None, :] < counts[None, :, None]).reshape(n, steps + 1, 1, h, w)  # (N, T, 1, H, W)
    kernel = min(11, 2 * min(h, w) - 1)  # RISE's 11 × 11 blur, smaller where the image is
    start, end = ((images, torch.zeros_like(images)) if mode == "deletion"
                  else (gaussian_blur(images, kernel_size=kernel, sigma=5.0), images))
    sequence = torch.where(changed, end[:, None], start[:, None]).reshape(-1, *images.shape[1:])
    targets = labels.repeat_interleave(steps + 1)
    probabilities = []
    with preserved_state(model), torch.no_grad():
        for i in range(0, len(sequence), batch_size):
            logits = model(sequence[i:i + batch_size])
            probabilities.append(logits.softmax(1).gather(1, targets[i:i + batch_size, None])[:, 0])
    return torch.cat(probabilities).reshape(n, steps + 1)


def curve_auc(curve: torch.Tensor) -> torch.Tensor:
    """Trapezoidal area under each row of a curve sampled at equal steps over [0, 1]: (N,).

    Example:
        >>> curve_auc(torch.tensor([[1.0, 0.0, 0.0]]))
        tensor([0.2500])
    """
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps (N, …) (ties share their mean rank); two constant
    maps correlate 1, one constant map 0.

    Example:
        >>> spearman(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 20.0, 40.0]]))
        tensor([1.])
    """
    ranks = [torch.from_numpy(rankdata(x.reshape(len(x), -1).double().cpu().numpy(), axis=1)) for x in (a, b)]
    centred = [r - r.mean(1, keepdim=True) for r in ranks]
    norms = [c.norm(dim=1) for c in centred]
    flat = [n == 0 for n in norms]
    rho = (centred[0] * centred[1]).sum(1) / (norms[0] * norms[1]).clamp_min(1e-12)
    rho = torch.where(flat[0] & flat[1], torch.ones_like(rho), torch.where(flat[0] | flat[1], 0.0, rho))
    return rho.float()


def cascade_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's parameterised blocks from the output down: children in order, containers
    (``Sequential``, ``ModuleList``, ``ModuleDict``) opened one level at a time, reversed.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> [name for name, _ in cascade_blocks(net)]
        ['2', '0']
    """
    blocks: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if not any(True for _ in child.parameters()):
                continue
            if isinstance(child, nn.Sequential | nn.ModuleList | nn.ModuleDict):
                visit(f"{full}.", child)
            else:
                blocks.append((full, child))

    visit("", model)
    return blocks[::-1]


def randomize(block: nn.Module, generator: torch.Generator) -> None:
    """Re-draw every parameter of ``block``: ``reset_parameters()`` where a module has it (its own init
    rule, under ``generator``'s seed), then a normal draw for what that leaves untouched, e.g. BatchNorm.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2 ** 31, (1,), generator=generator)))
        for module in block.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
            if isinstance(module, nn.modules.batchnorm._NormBase) and module.affine:
                with torch.no_grad():
                    module.weight.normal_(1.0, 0.5)
                    module.bias.normal_(0.0, 0.5)


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak memory of the block in MB: CUDA's peak allocated, or on Linux (glibc) the growth of the process's
    peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) after ``malloc_trim`` returned the
    freed memory; NaN where neither is available.
    """
    result = {"mb": float("nan")}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield result
        result["mb"] = (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20
        return
    status, clear = Path("/proc/self/status"), Path("/proc/self/clear_refs")
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back, so reused memory counts too
        clear.write_text("5")
        before = _status_kb(status, "VmRSS")
    except (OSError, AttributeError):  # not Linux, or a libc without malloc_trim
        yield result
        return
    yield result
    result["mb"] = max(_status_kb(status, "VmHWM") - before, 0) / 1024


def _status_kb(status: Path, key: str) -> int:
    line = next(line for line in status.read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1])


def heatmaps_of(explainer: Any, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, 1, H, W) heat-maps of ``labels`` at input resolution, in batches, detached."""
    maps = [as_heatmap(explainer.attribute(images[i:i + batch_size], target=labels[i:i + batch_size])).detach()
            for i in range(0, len(images), batch_size)]
    return upsample_to(torch.cat(maps), images.shape[-2:])  # a method built with upsample=False


def top_two_discrimination(model: nn.Module, explainer: Any, images: torch.Tensor, batch_size: int = 32,
                           seed: int = 0) -> torch.Tensor:
    """:func:`~captum_topgap.evaluate.metrics.class_discrimination` of a method's maps for each image's top-1 and
    top-2 predicted classes, 1 − Pearson(map of the top-1 class, map of the top-2 class): (N,); NaN for a model
    with one class. Both passes are seeded with ``seed`` (a method that draws random numbers draws the same ones).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2, bias=False))
        >>> _ = net[1].weight.data.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]]))
        >>> saliency = get_method("saliency", net)  # |∂y_c/∂x| = |w_c|: class 1's map is class 0's reversed
        >>> top_two_discrimination(net, saliency, torch.rand(2, 1, 2, 2)).tolist()
        [2.0, 2.0]
    """
    with preserved_state(model), torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in images.split(batch_size)])
    if logits.shape[1] < 2:
        return torch.full((len(images),), float("nan"))
    top = logits.topk(2, dim=1).indices
    maps = []
    for rank in range(2):
        torch.manual_seed(seed)
        maps.append(heatmaps_of(explainer, images, top[:, rank], batch_size))
    return class_discrimination(maps[0], maps[1])


def _noise(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum's infidelity perturbation: Gaussian noise I (σ = 0.003) and the input minus it."""
    noise = 0.003 * torch.randn_like(inputs)
    return noise, inputs - noise


def _scaled(explainer: Any) -> Callable[..., Any]:
    """``explainer.attribute`` as a min-max-scaled heat-map, in Captum's tensor-or-tuple convention."""
    def explain(inputs: Any, **kwargs: Any) -> Any:
        maps = explainer.attribute(inputs, **kwargs)
        as_tuple = isinstance(maps, tuple)
        heat = normalize_per_image(as_heatmap(maps[0] if as_tuple else maps))
        return (heat,) if as_tuple else heat

    return explain


def faithfulness(model: nn.Module, explainer: Any, images: torch.Tensor, labels: torch.Tensor,
                 heat: torch.Tensor, steps: int, n_perturb_samples: int, batch_size: int,
                 sensitivity_images: int | None = None) -> dict[str, float]:
    """Deletion and insertion AUC, ROAD, infidelity and sensitivity (on the first ``sensitivity_images``:
    it re-runs the method ``n_perturb_samples`` times) of one method's maps ``heat``.
    """
    deletion = curve_auc(perturbation_curve(model, images, heat, labels, "deletion", steps, batch_size))
    insertion = curve_auc(perturbation_curve(model, images, heat, labels, "insertion", steps, batch_size))
    scaled = normalize_per_image(heat)
    road = ROADCombined(percentiles=[20, 40, 60, 80])(images, scaled[:, 0].cpu().numpy(),
                                                     [ClassifierOutputSoftmaxTarget(int(c)) for c in labels], model)
    torch.manual_seed(0)
    infid = infidelity(model, _noise, images, heat.expand_as(images), target=labels,
                       n_perturb_samples=n_perturb_samples, normalize=True)
    few = slice(0, sensitivity_images or len(images))
    sens = sensitivity_max(_scaled(explainer), images[few], target=labels[few],
                           n_perturb_samples=n_perturb_samples, perturb_radius=0.02)
    return {"deletion_auc": float(deletion.mean()), "insertion_auc": float(insertion.mean()),
            "road": float(np.mean(road)), "infidelity": float(infid.mean()), "sensitivity": float(sens.mean())}


def randomization_cascade(model: nn.Module, name: str, images: torch.Tensor, labels: torch.Tensor,
                          heat: torch.Tensor, options: dict[str, Any], batch_size: int, seed: int = 0,
                          ) -> list[dict[str, Any]]:
    """Spearman between ``heat`` (the trained model's maps) and the maps after each step of the cascade."""
    randomized = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    steps = []
    for block_name, block in cascade_blocks(randomized):
        randomize(block, generator)
        torch.manual_seed(seed)
        with warnings.catch_warnings():  # a randomised model's empty maps are expected, not news
            warnings.simplefilter("ignore", UserWarning)
            maps = heatmaps_of(get_method(name, randomized, **options), images, labels, batch_size)
        steps.append({"block": block_name, "spearman": float(spearman(heat, maps).mean())})
    return steps


def compare(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
            methods: Sequence[str], method_kwargs: dict[str, dict[str, Any]] | None = None, steps: int = 16,
            n_perturb_samples: int = 8, sanity_images: int | None = None, batch_size: int = 32,
            seed: int = 0, progress: bool = True) -> dict[str, dict[str, Any]]:
    """One row per method (:data:`COLUMNS`, plus ``randomization_cascade`` and ``flagged``), all methods on
    the same ``images`` (N, C, H, W) with their true ``labels`` and ``masks`` (N, 1, H, W).

    ``sanity_images`` caps the images of the randomisation cascade (one pass per block) and of
    ``sensitivity_max`` (``n_perturb_samples`` passes): the two measures that re-run the method;
    ``method_kwargs`` gives constructor options per method (``{"rise": {"n_masks": 500}}``). Methods
    that draw random numbers are seeded with ``seed`` before each pass, so the trained and randomised
    maps share their draws.
    """
    images = check_images(images, model)
    if not methods:
        raise ValueError("`methods` is empty; pass registry names, e.g. ['gradcam', 'saliency'].")
    if masks.shape[0] != images.shape[0] or labels.shape[0] != images.shape[0]:
        raise ValueError(f"`labels` and `masks` must have one entry per image ({len(images)}), got "
                         f"{len(labels)} and {len(masks)}.")
    rows: dict[str, dict[str, Any]] = {}
    with preserved_state(model):  # eval mode inside; the caller's model comes back as it was
        bar = tqdm(methods, desc="methods", disable=not progress)
        for name in bar:
            bar.set_postfix_str(name)
            rows[name] = score_method(model, name, (method_kwargs or {}).get(name, {}), images, labels, masks,
                                      steps, n_perturb_samples, sanity_images, batch_size, seed)
    return rows


def score_method(model: nn.Module, name: str, options: dict[str, Any], images: torch.Tensor,
                 labels: torch.Tensor, masks: torch.Tensor, steps: int, n_perturb_samples: int,
                 sanity_images: int | None, batch_size: int, seed: int) -> dict[str, Any]:
    """One row of :func:`compare`: the first pass (timed, its peak memory), then every measure of its maps."""
    explainer = get_method(name, model, **options)
    torch.manual_seed(seed)
    with peak_memory(images.device) as memory:
        start = time.perf_counter()
        heat = heatmaps_of(explainer, images, labels, batch_size)
        seconds = time.perf_counter() - start
    faithful = faithfulness(model, explainer, images, labels, heat, steps, n_perturb_samples, batch_size,
                            sanity_images)
    sanity = slice(0, sanity_images or len(images))
    cascade = randomization_cascade(model, name, images[sanity], labels[sanity], heat[sanity], options,
                                    batch_size, seed)
    similarity = float(np.mean([step["spearman"] for step in cascade]))
    discrimination = top_two_discrimination(model, explainer, images, batch_size, seed)
    return {
        "iou": float(mask_iou(heat, masks).mean()), "pxap": pxap(heat, masks),
        "max_box_acc_v2": max_box_accuracy(heat, mask_boxes(masks))["MaxBoxAccV2"],
        "pointing_game": float(pointing_game(heat, masks).mean()),
        "energy_pointing_game": float(energy_pointing_game(heat, masks).mean()),
        **faithful, "seconds_per_image": seconds / len(images), "peak_memory_mb": memory["mb"],
        "randomization_cascade": cascade, "randomization_similarity": similarity,
        "flagged": similarity >= FLAG_SIMILARITY, "class_discrimination": float(discrimination.mean()),
    }

"""What a unit or a class responds to: maximally activating patches, class-model visualisation.

**Maximally activating patches.** Run a dataset through the model, keep the N largest activations
A_k(i, y, x) of channel k of a layer over all images i and positions (y, x) in a bounded min-heap
(memory O(N), whatever the dataset size), and crop each position's receptive field from its image.
The receptive field follows from the layer's chain of convolutions and poolings:

    r_l = r_{l-1} + (k_l − 1)·j_{l-1},    j_l = j_{l-1}·s_l,    c_l = c_{l-1} + ((k_l − 1)/2 − p_l)·j_{l-1}

(size r, jump j, centre c of position 0; r_0 = j_0 = 1, c_0 = 0), and position (y, x) covers the
r × r box centred on (c + y·j, c + x·j).

**Class-model visualisation** (Simonyan et al., 2014): gradient ascent on the pre-softmax score,
I* = argmax_I S_c(I) − λ‖I‖², from a grey image, with optional jitter and blur as regularisers.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, stride=2))
    >>> receptive_field(list(net))
    (5, 2, 1.0)
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn
from tqdm.auto import tqdm

from captum_topgap._hooks import capture, forward_hooks
from captum_topgap._state import preserved_state
from captum_topgap.app.plots import new_figure, save_figure
from captum_topgap.data.transforms import Samples, batches


def _pair(value: int | tuple[int, ...]) -> int:
    return value if isinstance(value, int) else value[0]


Chained = nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d
"""The modules that set a receptive field: convolutions and poolings."""


def receptive_field(chain: Sequence[Chained]) -> tuple[int, int, float]:
    """(size r, jump j, centre c of position 0) of a chain of Conv2d / MaxPool2d / AvgPool2d (square kernels)."""
    size, jump, centre = 1, 1, 0.0
    for module in chain:
        kernel, stride = _pair(module.kernel_size), _pair(module.stride)
        padding, dilation = _pair(module.padding), _pair(getattr(module, "dilation", 1))  # type: ignore[arg-type]
        kernel = dilation * (kernel - 1) + 1
        centre += ((kernel - 1) / 2 - padding) * jump
        size += (kernel - 1) * jump
        jump *= stride
    return size, jump, centre


def layer_chain(model: nn.Module, layer: nn.Module, example: torch.Tensor) -> list[Chained]:
    """Convolutions and poolings that run before ``layer`` returns, in forward order, without 1 × 1
    convolutions (residual shortcuts: they never grow the field and sit beside a strided main-path conv).

    Example:
        >>> import timm
        >>> model = timm.create_model("resnet18", num_classes=2)
        >>> receptive_field(layer_chain(model, model.layer1, torch.zeros(1, 3, 64, 64)))[:2]
        (43, 4)
    """
    order: list[Chained] = []
    done = {"flag": False}

    def record(module: nn.Module, _inputs: object, _output: object) -> None:
        if done["flag"]:
            return
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) or (
                isinstance(module, nn.Conv2d) and _pair(module.kernel_size) > 1):
            order.append(module)

    def finish(_module: nn.Module, _inputs: object, _output: object) -> None:
        done["flag"] = True

    with preserved_state(model), torch.no_grad(), forward_hooks(model.modules(), record), \
            forward_hooks([layer], finish):
        model(example)
    return list(dict.fromkeys(order))


@dataclass(frozen=True, order=True)
class Patch:
    """One activation: value, index of its image in the dataset, position (y, x) and the crop box
    (top, left, bottom, right) of its receptive field.
    """

    value: float
    image: int
    position: tuple[int, int]
    box: tuple[int, int, int, int]


def top_activations(model: nn.Module, layer: nn.Module, channel: int, data: Samples, n: int = 9,
                    batch_size: int = 64, progress: bool = True) -> list[tuple[float, int, int, int]]:
    """The ``n`` largest (activation, image index, y, x) of ``channel`` over the dataset, largest first.

    Streaming: each batch contributes its own top n to a bounded min-heap, so memory is O(n).
    """
    heap: list[tuple[float, int, int, int]] = []
    device = next(model.parameters()).device
    offset = 0
    with preserved_state(model), torch.no_grad(), capture([layer]) as seen:
        for batch in tqdm(batches(data, batch_size), desc=f"channel {channel}",
                          disable=not progress, leave=False):
            model(batch.images.to(device))
            output = seen.ready()[0]
            if not 0 <= channel < output.shape[1]:
                raise ValueError(f"`channel` {channel} out of range: the layer has {output.shape[1]} channels; "
                                 f"use 0 … {output.shape[1] - 1}.")
            activation = output[:, channel]
            width = activation.shape[-1]
            values, flat = activation.flatten().topk(min(n, activation.numel()))
            for value, index in zip(values.tolist(), flat.tolist(), strict=True):
                image, rest = divmod(index, activation.shape[-2] * width)
                item = (value, offset + image, *divmod(rest, width))
                if len(heap) < n:
                    heapq.heappush(heap, item)
                elif item > heap[0]:
                    heapq.heapreplace(heap, item)
            offset += activation.shape[0]
    return sorted(heap, reverse=True)


def max_activating_patches(model: nn.Module, layer: nn.Module, channel: int, data: Samples, n: int = 9,
                           batch_size: int = 64, progress: bool = True) -> list[Patch]:
    """Top-``n`` activations of ``channel`` with their receptive-field boxes (clipped to the image).

    Example:
        >>> from captum_topgap.data import TexturedMNIST
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(2))
        >>> patches = max_activating_patches(net, net[1], 0, TexturedMNIST("test", size=16, limit=8), n=3,
        ...                                  progress=False)
        >>> len(patches), all(0 <= p.box[0] < p.box[2] <= 16 and p.box[2] - p.box[0] <= 4 for p in patches)
        (3, True)
    """
    image = data[0][0]
    size, jump, centre = receptive_field(layer_chain(model, layer, image[None].to(next(model.parameters()).device)))
    height, width = image.shape[-2:]
    patches = []
    for value, index, y, x in top_activations(model, layer, channel, data, n, batch_size, progress):
        top, left = round(centre + y * jump - (size - 1) / 2), round(centre + x * jump - (size - 1) / 2)
        box = (max(top, 0), max(left, 0), min(top + size, height), min(left + size, width))
        patches.append(Patch(value, index, (y, x), box))
    return patches


def class_model(model: nn.Module, target: int, input_size: tuple[int, int, int] = (3, 64, 64), steps: int = 200,
                lr: float = 0.5, l2: float = 1e-3, jitter: int = 0, blur_every: int = 0, blur_sigma: float = 0.5,
                seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Class-model image (C, H, W) by gradient ascent on S_c(I) − λ‖I‖², and the score after each step.

    Args:
        model: the classifier (run in eval mode; its state is restored).
        target: class c; its pre-softmax score S_c is maximised.
        input_size: (C, H, W) of the image.
        steps: iterations of the ascent I ← I + lr·∇_I (S_c − λ‖I‖²).
        lr: its step size.
        l2: λ of the L2 regulariser.
        jitter: roll the image by up to ``jitter`` pixels before each step (0: off).
        blur_every: blur the image every ``blur_every`` steps (0: off).
        blur_sigma: the blur's Gaussian standard deviation.
        seed: the grey starting image's noise and the jitter.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        >>> image, scores = class_model(net, 1, (3, 8, 8), steps=5, lr=0.1)
        >>> image.shape, scores[-1] > scores[0]
        (torch.Size([3, 8, 8]), True)
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    image = (0.5 + 0.01 * torch.randn(1, *input_size, generator=generator)).to(device)
    scores = []
    with preserved_state(model):
        for step in range(steps):
            shift = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist() if jitter else [0, 0]
            current = image.roll(shift, dims=(2, 3)).requires_grad_(True)
            score = model(current)[0, target]
            objective = score - l2 * current.pow(2).sum()
            grad = torch.autograd.grad(objective, current)[0].roll([-shift[0], -shift[1]], dims=(2, 3))
            image = (image + lr * grad).detach()
            if blur_every and (step + 1) % blur_every == 0:
                image = TF.gaussian_blur(image, [5, 5], [blur_sigma, blur_sigma])
            scores.append(float(score.detach()))
    return image[0], scores


def save_patch_grid(patches: Sequence[Patch], data: Samples, path: str | Path, size: int = 48) -> Path:
    """One PNG of the patches (each resized to ``size``), titled with the activation value."""
    columns = min(len(patches), 9)
    rows = -(-len(patches) // columns)
    figure, axes = new_figure(rows, columns, figsize=(1.2 * columns, 1.35 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, patch in zip(axes.flat, patches, strict=False):
        top, left, bottom, right = patch.box
        crop = data[patch.image][0][:, top:bottom, left:right]
        crop = F.interpolate(crop[None], size=(size, size), mode="nearest")[0]
        ax.imshow(crop.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
        ax.set_title(f"{patch.value:.2f}", fontsize=6)
    figure.tight_layout()
    save_figure(figure, path)
    return Path(path)

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

**Neuron visualisation**: the same ascent (:func:`gradient_ascent`, one loop for both) on the mean activation
of one channel k of a layer, I*_k = argmax_{I ∈ [0, 1]} mean_{y,x} A_k(I)(y, x) − λ‖I‖², the image clipped to
the image range after each step.

**First-layer filters**: the weights (K, 3, kh, kw) of the first convolution over RGB, each filter min-max
scaled to [0, 1] on its own, drawn as colour tiles.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, stride=2))
    >>> receptive_field(list(net))
    (5, 2, 1.0)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn
from tqdm.auto import tqdm

from captum_topgap._hooks import capture, forward_hooks
from captum_topgap._layers import default_layer, example_input, resolve_layer
from captum_topgap._state import preserved_state
from captum_topgap.app.arguments import UsageError
from captum_topgap.app.plots import new_figure, png_path, save_figure
from captum_topgap.data.transforms import Samples, batches
from captum_topgap.evaluate.metrics import normalize_per_image


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


Objective = Callable[[torch.Tensor], torch.Tensor]
"""What a gradient ascent maximises: a batch of images (B, C, H, W) -> one value per image (B,)."""


def gradient_ascent(model: nn.Module, objective: Objective, start: torch.Tensor, steps: int = 200, lr: float = 0.5,
                    l2: float = 1e-3, jitter: int = 0, blur_every: int = 0, blur_sigma: float = 0.5,
                    value_range: tuple[float, float] | None = None, generator: torch.Generator | None = None,
                    progress: bool = True, desc: str = "gradient ascent") -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) by gradient ascent from ``start``, every image b on its own objective f_b, all at once;
    and f (steps, B) before each step:

        I_b ← clip(I_b + lr · ∇_{I_b} (f_b(I) − λ‖I_b‖²))

    One backward pass through Σ_b (f_b − λ‖I_b‖²) gives each image its own gradient: the model runs in eval mode
    (its state restored), so the images of a batch do not interact. The class models and the channel images are
    this loop with their own f.

    Args:
        model: the network ``objective`` runs.
        objective: f, (B, C, H, W) -> (B,).
        start: the first images (B, C, H, W).
        steps: iterations.
        lr: step size.
        l2: λ of the L2 regulariser.
        jitter: roll the batch by one random shift of up to ``jitter`` pixels before each step (0: off).
        blur_every: blur the images every ``blur_every`` steps (0: off).
        blur_sigma: the blur's Gaussian standard deviation.
        value_range: clip the images to [low, high] after each step (None: off).
        generator: the jitter's random numbers (None: seed 0).
        progress: a tqdm bar over the steps.
        desc: the bar's label.

    Example:
        >>> net = torch.nn.Conv2d(3, 1, 1, bias=False)
        >>> _ = torch.nn.init.ones_(net.weight)  # f = mean over positions of R + G + B: ∂f/∂I = 1/4 per pixel
        >>> image, values = gradient_ascent(net, lambda x: net(x).mean((1, 2, 3)), torch.zeros(1, 3, 2, 2),
        ...                                 steps=3, lr=2.0, l2=0.0, value_range=(0.0, 1.0), progress=False)
        >>> values[:, 0].tolist(), image.unique().tolist()
        ([0.0, 1.5, 3.0], [1.0])
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    image = start.detach()
    values = []
    with preserved_state(model):
        for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
            shift = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist() if jitter else [0, 0]
            current = image.roll(shift, dims=(2, 3)).requires_grad_(True)
            value = objective(current)
            total = (value - l2 * current.pow(2).flatten(1).sum(1)).sum()
            grad = torch.autograd.grad(total, current)[0].roll([-shift[0], -shift[1]], dims=(2, 3))
            image = (image + lr * grad).detach()
            if blur_every and (step + 1) % blur_every == 0:
                image = TF.gaussian_blur(image, [5, 5], [blur_sigma, blur_sigma])
            if value_range is not None:
                image = image.clamp(*value_range)
            values.append(value.detach())
    return image, torch.stack(values) if values else torch.empty(0, len(start))


def class_model(model: nn.Module, target: int, input_size: tuple[int, int, int] = (3, 64, 64), steps: int = 200,
                lr: float = 0.5, l2: float = 1e-3, jitter: int = 0, blur_every: int = 0, blur_sigma: float = 0.5,
                seed: int = 0, progress: bool = True) -> tuple[torch.Tensor, list[float]]:
    """Class-model image (C, H, W) by :func:`gradient_ascent` on S_c(I) − λ‖I‖², and the score before each step.

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
        progress: a tqdm bar over the steps.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        >>> image, scores = class_model(net, 1, (3, 8, 8), steps=5, lr=0.1, progress=False)
        >>> image.shape, scores[-1] > scores[0]
        (torch.Size([3, 8, 8]), True)
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    start = (0.5 + 0.01 * torch.randn(1, *input_size, generator=generator)).to(device)
    image, scores = gradient_ascent(model, lambda images: model(images)[:, target], start, steps, lr, l2, jitter,
                                    blur_every, blur_sigma, generator=generator, progress=progress,
                                    desc=f"class {target}")
    return image[0], scores[:, 0].tolist()


NEURONS = 8
"""Channels :func:`neuron_images` draws when none are named: the first eight."""


def neuron_images(model: nn.Module, layer: nn.Module, channels: Sequence[int] | None = None,
                  input_size: tuple[int, int, int] = (3, 64, 64), steps: int = 200, lr: float = 0.5,
                  l2: float = 1e-3, jitter: int = 0, blur_every: int = 0, blur_sigma: float = 0.5, seed: int = 0,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """One input per channel k of ``layer`` that maximises the channel's mean activation, by
    :func:`gradient_ascent` on all channels in one batch, each image kept in the image range [0, 1]:

        I*_k = argmax_{I ∈ [0, 1]^{C×H×W}} (1/hw) Σ_{y,x} A_k(I)(y, x) − λ‖I‖²

    from the same grey start as :func:`class_model` (0.5 + 0.01·noise).

    Returns the images (K, C, H, W), the mean activations (steps, K) before each step, and the channels drawn
    (``channels``, or the first :data:`NEURONS` of the layer when None). A layer without a feature map
    (N, C, H, W) output, or a channel the layer does not have, is a ``ValueError`` before any step.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Conv2d(2, 4, 3))
        >>> images, values, drawn = neuron_images(net, net[1], [1, 3], (3, 8, 8), steps=5, progress=False)
        >>> tuple(images.shape), drawn, bool((values[-1] > values[0]).all())
        ((2, 3, 8, 8), [1, 3], True)
        >>> 0 <= float(images.min()) <= float(images.max()) <= 1
        True
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    with preserved_state(model), torch.no_grad(), capture([layer]) as seen:
        model(torch.full((1, *input_size), 0.5, device=device))
    output = seen.ready()[0]
    if output.dim() != 4:
        raise ValueError(f"`layer` {type(layer).__name__} outputs {tuple(output.shape)}, not a feature map "
                         "(N, C, H, W); pick a convolutional block, e.g. the default Grad-CAM layer.")
    width = output.shape[1]
    drawn = list(range(min(NEURONS, width))) if channels is None else [int(c) for c in channels]
    bad = [c for c in drawn if not 0 <= c < width]
    if not drawn:
        raise ValueError("`channels` is empty; name at least one channel of the layer, e.g. [0].")
    if bad:
        raise ValueError(f"`channels` {bad} out of range: the layer has {width} channels; use 0 … {width - 1}.")
    start = (0.5 + 0.01 * torch.randn(len(drawn), *input_size, generator=generator)).to(device)
    rows, picked = torch.arange(len(drawn), device=device), torch.tensor(drawn, device=device)

    def mean_activation(images: torch.Tensor) -> torch.Tensor:
        with capture([layer]) as activations:
            model(images)
        return activations.ready()[0][rows, picked].mean((-2, -1))

    images, values = gradient_ascent(model, mean_activation, start, steps, lr, l2, jitter, blur_every, blur_sigma,
                                     value_range=(0.0, 1.0), generator=generator, progress=progress,
                                     desc=f"{len(drawn)} channels")
    return images, values, drawn


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The model's first convolution over RGB: the first ``nn.Conv2d`` with 3 input channels (and one group), in
    the order the modules were registered — ``conv1`` of a ResNet, ``conv_stem`` of an EfficientNet.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.Conv2d(3, 8, 5))
        >>> first_conv(net)[0]
        '1'
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3 and module.groups == 1:
            return name, module
    raise ValueError("the model has no nn.Conv2d over 3 input channels, so it has no RGB filters to draw; "
                     "pass a model trained on colour images (in_chans=3), or see its units with visualize neurons.")


def filter_tiles(conv: nn.Conv2d) -> torch.Tensor:
    """The filters of ``conv`` as RGB tiles (K, 3, kh, kw), each min-max scaled to [0, 1] on its own over its three
    channels together (so a filter's colours keep their balance):

        T_k = (W_k − min W_k) / (max W_k − min W_k),   a constant filter: zeros (black)

    Example:
        >>> conv = torch.nn.Conv2d(3, 1, 1, bias=False)
        >>> _ = conv.weight.data.copy_(torch.tensor([-2.0, 0.0, 2.0]).view(1, 3, 1, 1))
        >>> filter_tiles(conv).flatten().tolist()
        [0.0, 0.5, 1.0]
    """
    if conv.in_channels != 3 or conv.groups != 1:
        raise ValueError(f"`conv` must convolve 3 input channels (RGB) in one group, got {conv}; find it with "
                         "first_conv(model).")
    return normalize_per_image(conv.weight.detach().float().cpu())


def save_tile_grid(tiles: Sequence[torch.Tensor], path: str | Path, titles: Sequence[str] | None = None,
                   columns: int | None = None, title: str | None = None) -> Path:
    """One PNG of RGB tiles (3, h, w) in [0, 1], drawn pixel for pixel (nearest neighbour), ``columns`` per row
    (default ⌈√n⌉), each with its title, the figure with ``title``.

    Example:
        >>> import tempfile
        >>> path = save_tile_grid([torch.rand(3, 4, 4)] * 5, Path(tempfile.mkdtemp()) / "tiles.png")
        >>> path.is_file()
        True
    """
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = -(-len(tiles) // columns)
    width = max(1.2 * columns, 0.07 * len(title or "") + 0.4)  # the title fits
    figure, axes = new_figure(rows, columns, figsize=(width, 1.4 * rows + (0.3 if title else 0.0)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for index, (ax, tile) in enumerate(zip(axes.flat, tiles, strict=False)):
        ax.imshow(tile.permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[index], fontsize=6)
    if title:
        figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)
    return png_path(path)


def save_patch_grid(patches: Sequence[Patch], data: Samples, path: str | Path, size: int = 48) -> Path:
    """One PNG of the patches (each resized to ``size``), titled with the activation value, nine to a row.

    Example:
        >>> import tempfile
        >>> from captum_topgap.data import TexturedMNIST
        >>> patch = Patch(1.0, 0, (0, 0), (0, 0, 8, 8))
        >>> save_patch_grid([patch], TexturedMNIST("test", size=16, limit=1), Path(tempfile.mkdtemp()) / "p").name
        'p.png'
    """
    crops = []
    for patch in patches:
        top, left, bottom, right = patch.box
        crop = data[patch.image][0][:, top:bottom, left:right]
        crops.append(F.interpolate(crop[None], size=(size, size), mode="nearest")[0])
    return save_tile_grid(crops, path, [f"{patch.value:.2f}" for patch in patches], columns=min(len(patches), 9))


def visualize_filters(model: nn.Module, out: str | Path) -> int:
    """``captum-topgap visualize filters``: the first RGB convolution's filters (:func:`first_conv`,
    :func:`filter_tiles`) as one grid, ``out/filters.png``; a model without one is a usage error before anything is
    written.

    Example:
        >>> import tempfile
        >>> visualize_filters(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), tempfile.mkdtemp())  # doctest: +ELLIPSIS
        first convolution 0: 4 filters of 3 × 3 -> .../filters.png
        0
    """
    try:
        name, conv = first_conv(model)
    except ValueError as error:
        raise UsageError(f"--checkpoint: {error}") from None
    tiles = filter_tiles(conv)
    height, width = tiles.shape[-2:]
    path = save_tile_grid(list(tiles), Path(out) / "filters.png", [str(k) for k in range(len(tiles))],
                          title=f"{name}: {len(tiles)} filters of {height} × {width}, each scaled to [0, 1]")
    print(f"first convolution {name}: {len(tiles)} filters of {height} × {width} -> {path}")
    return 0


def visualize_neurons(model: nn.Module, out: str | Path, layer: str | None = None,
                      channels: Sequence[int] | None = None, size: int = 64, steps: int = 200, lr: float = 0.5,
                      l2: float = 1e-3, jitter: int = 0, blur_every: int = 0, seed: int = 0) -> int:
    """``captum-topgap visualize neurons``: :func:`neuron_images` of ``channels`` (default the first
    :data:`NEURONS`) of ``layer`` (a dotted name; default the Grad-CAM layer,
    :func:`captum_topgap._layers.default_layer`) as one grid, ``out/neurons_<layer>.png``. An unknown layer or
    channel is a usage error before anything is written.

    Example:
        >>> import tempfile
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(), torch.nn.Conv2d(2, 4, 3))
        >>> visualize_neurons(net, tempfile.mkdtemp(), "2", [0], size=16, steps=3)  # doctest: +ELLIPSIS
        layer 2 channel 0: mean activation ... -> ...
        wrote .../neurons_2.png
        0
    """
    input_size = (3, size, size)
    if layer is None:
        layer, module = default_layer(model, example_input(model, input_size))
    else:
        try:
            module = resolve_layer(model, layer)
        except ValueError as error:
            raise UsageError(f"--layer: {error}") from None
    images, values, drawn = neuron_images(model, module, channels, input_size, steps, lr, l2, jitter, blur_every,
                                          seed=seed)
    with preserved_state(model), torch.no_grad(), capture([module]) as seen:
        model(images)
    reached = seen.ready()[0][list(range(len(drawn))), drawn].mean((-2, -1)).tolist()
    for channel, first, last in zip(drawn, values[0].tolist(), reached, strict=True):
        dead = " (zero on the grey start: no gradient reaches the image)" if first == last == 0 else ""
        print(f"layer {layer} channel {channel}: mean activation {first:.3f} -> {last:.3f}{dead}")
    path = save_tile_grid(list(images.cpu()), Path(out) / f"neurons_{layer}.png",
                          [f"channel {channel}: {value:.2f}" for channel, value in zip(drawn, reached, strict=True)],
                          columns=min(len(drawn), 4),
                          title=f"{layer}: the input maximising each channel's mean activation ({steps} steps)")
    print(f"wrote {path}")
    return 0

"""Measures of Perception Visualization in place of its user study (Giulivi, Carman and Boracchi, BMVC 2021).

The paper's evidence is a study of about 100 people: "PV is able to help respondents better determine the
predicted class in cases where the model had made an error" (seed 003). Neither its code nor its protocol is
public; these measures are this repository's designs (docs/perception.md says why each):

- *decision preservation*: the classifier decides on the reconstruction x̂ = D(E(x)) as on x, counted apart on
  the images it classifies correctly and on those it gets wrong;
- *latent fidelity*: how far E(x̂) lies from E(x), relative to ‖E(x)‖;
- *a machine observer* instead of the people: a small CNN trained to predict the model's decision from an
  explanation image alone, scored on held-out images the model got wrong;
- *texture agreement* ("what, not only where"): on Textured MNIST, which background texture an explanation
  shows, read by a texture classifier trained on renderings of the background textures.

The explanations compared are PV = s ⊙ x̂ + (1 − s) ⊙ g (:mod:`captum_topgap.methods.perception`) and the
Grad-CAM overlay O = s ⊙ x + (1 − s) ⊙ g: the same saliency s and grey g over the input instead of the
reconstruction, so that the two differ in x̂ against x and in nothing else. Every function works on whole
tensors or in batches; none loops over images.

Example:
    >>> predictions, labels = torch.tensor([1, 2, 0]), torch.tensor([1, 1, 0])
    >>> decision_preservation(predictions, torch.tensor([1, 0, 0]), labels)
    Preservation(correct=1.0, n_correct=2, wrong=0.0, n_wrong=1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from captum_topgap._checks import check_int
from captum_topgap._hooks import capture
from captum_topgap._state import preserved_state
from captum_topgap.methods.perception import GREY, perception_maps, perception_visualization, unit_saliency
from captum_topgap.models.perception import PerceptionDecoder

OBSERVER_EPOCHS = 15
"""Epochs of every machine observer (fixed before any run: enough for the loss on 500 images to flatten)."""
TEXTURE_EPOCHS = 10
"""Epochs of the texture classifier."""
TEXTURE_RENDERINGS = 64
"""Renderings of each texture the texture classifier is trained on."""
BLUR_FACTORS = (1, 2, 4)
"""Average-pooling factors of the renderings: sharp, or as blurred as a decoder's reconstruction."""
SALIENCY_GRIDS = (1, 2, 3, 6)
"""Side of the random grids upsampled into the renderings' saliencies (1: the texture alone, unmasked)."""


class Preservation(NamedTuple):
    """Decision preservation on the ``correct`` and the ``wrong`` predictions (``None``: no such image) and the
    number of each.
    """

    correct: float | None
    n_correct: int
    wrong: float | None
    n_wrong: int


def decision_preservation(predictions: torch.Tensor, reconstruction_predictions: torch.Tensor,
                          labels: torch.Tensor) -> Preservation:
    """Share of images whose decision on x̂ = D(E(x)) is the decision on x, apart on the correct and the wrong:

        P_S = |{i ∈ S : argmax M(x̂_i) = argmax M(x_i)}| / |S|,   S = {i : ŷ_i = y_i} or {i : ŷ_i ≠ y_i}

    P is ``None`` for an empty S; |S| is returned beside it.

    Example:
        >>> decision_preservation(torch.tensor([3, 3]), torch.tensor([3, 1]), torch.tensor([0, 0]))
        Preservation(correct=None, n_correct=0, wrong=0.5, n_wrong=2)
    """
    if not predictions.shape == reconstruction_predictions.shape == labels.shape or predictions.dim() != 1:
        raise ValueError(f"`predictions` {tuple(predictions.shape)}, `reconstruction_predictions` "
                         f"{tuple(reconstruction_predictions.shape)} and `labels` {tuple(labels.shape)} must be "
                         "class indices (N,) of the same N.")
    kept = predictions == reconstruction_predictions
    correct = predictions == labels
    counts = int(correct.sum()), int((~correct).sum())
    shares = [float(kept[subset].float().mean()) if count else None
              for subset, count in zip((correct, ~correct), counts, strict=True)]
    return Preservation(shares[0], counts[0], shares[1], counts[1])


def latent_fidelity(latent: torch.Tensor, re_encoded: torch.Tensor) -> float:
    """Mean over images of ‖E(x̂) − E(x)‖₂ / ‖E(x)‖₂ (0: the reconstruction encodes exactly as the image).

    Unlike the decoder's training term (:func:`~captum_topgap.models.perception.feature_consistency`), the
    norms are not squared: the number reads as a relative error.

    Example:
        >>> z = torch.ones(2, 1, 2, 2)
        >>> latent_fidelity(z, torch.cat([1.5 * z[:1], z[1:]]))  # (0.5 + 0) / 2
        0.25
    """
    if latent.shape != re_encoded.shape or latent.dim() < 2:
        raise ValueError(f"E(x) {tuple(latent.shape)} and E(x̂) {tuple(re_encoded.shape)} must be batches of "
                         "the same shape.")
    error = (re_encoded - latent).flatten(1).norm(dim=1)
    return float((error / latent.flatten(1).norm(dim=1).clamp_min(1e-12)).mean())


def gradcam_overlay(images: torch.Tensor, saliency: torch.Tensor, grey: float = GREY) -> torch.Tensor:
    """The Grad-CAM overlay the observer sees, O = s ⊙ x + (1 − s) ⊙ g: PV's formula with the input x in place
    of the reconstruction x̂ (the image where Grad-CAM is high, grey where it is zero).

    Example:
        >>> gradcam_overlay(torch.zeros(1, 3, 1, 2), torch.tensor([[[[1.0, 0.5]]]]))[0, 0].tolist()
        [[0.0, 0.25]]
    """
    return perception_visualization(images, saliency, grey)


def perceive(decoder: PerceptionDecoder, images: torch.Tensor, batch_size: int = 64,
             grey: float = GREY) -> dict[str, torch.Tensor]:
    """Everything the measures read of a decoder over ``images``, in batches: the classifier's ``prediction``
    ŷ on x and ``reconstruction_prediction`` on x̂ (N,), ``latent_error`` ‖E(x̂) − E(x)‖ / ‖E(x)‖ (N,), and for the
    predicted class the ``saliency`` s (N, 1, H, W), the ``reconstruction`` x̂, ``pv`` and ``overlay`` (N, C, H, W),
    on the images' device. The decoder runs in eval mode, its state restored.

    Example:
        >>> import timm
        >>> decoder = PerceptionDecoder(timm.create_model("resnet18", num_classes=3), image_size=32)
        >>> seen = perceive(decoder, torch.rand(3, 3, 32, 32), batch_size=2)
        >>> tuple(seen["pv"].shape), tuple(seen["prediction"].shape), bool((seen["latent_error"] >= 0).all())
        ((3, 3, 32, 32), (3,), True)
    """
    check_int(batch_size, "batch_size", minimum=1)
    parts: dict[str, list[torch.Tensor]] = {}
    with preserved_state(decoder):
        for chunk in images.split(batch_size):
            with torch.no_grad(), capture([decoder.layer]) as seen:
                prediction = decoder.classifier(chunk).argmax(1)
            latent = seen.ready()[0]
            maps = perception_maps(decoder, chunk, prediction, grey=grey)
            with torch.no_grad(), capture([decoder.layer]) as seen:
                on_reconstruction = decoder.classifier(maps["reconstruction"]).argmax(1)
            re_encoded = seen.ready()[0]
            error = (re_encoded - latent).flatten(1).norm(dim=1) / latent.flatten(1).norm(dim=1).clamp_min(1e-12)
            batch = {"prediction": prediction, "reconstruction_prediction": on_reconstruction, "latent_error": error,
                     "saliency": maps["gradcam"], "reconstruction": maps["reconstruction"], "pv": maps["pv"],
                     "overlay": gradcam_overlay(chunk, maps["gradcam"], grey)}
            for key, value in batch.items():
                parts.setdefault(key, []).append(value.detach())
    return {key: torch.cat(values) for key, values in parts.items()}


class SmallCNN(nn.Module):
    """The observer and the texture classifier: three 3 × 3 stride-2 conv-BN-ReLU blocks (16, 32, 64 channels)
    on x − 0.5, average pooling to 3 × 3 and a linear layer to the classes — small enough to train in seconds
    on 2 CPU cores, with enough of a grid left to read a digit's shape.

    Example:
        >>> SmallCNN(4)(torch.rand(2, 3, 48, 48)).shape
        torch.Size([2, 4])
    """

    def __init__(self, classes: int, channels: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for width_in, width in ((channels, 16), (16, 32), (32, 64)):
            blocks += [nn.Conv2d(width_in, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(3), nn.Flatten())
        self.head = nn.Linear(64 * 9, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes)."""
        return self.head(self.features(images - 0.5))


def fit_small_cnn(images: torch.Tensor, targets: torch.Tensor, classes: int, epochs: int, seed: int = 0,
                  batch_size: int = 32, progress: bool = False) -> SmallCNN:
    """A :class:`SmallCNN` trained on (images, targets) by cross-entropy (Adam, lr 1e-3, mini-batches in a fresh
    order each epoch): init and order are fixed by ``seed`` and the global RNG is left as it was, so the result
    is the same on every CPU run. Returned in eval mode, on the images' device.

    Example:
        >>> images = torch.rand(8, 3, 16, 16)
        >>> first, again = (fit_small_cnn(images, torch.arange(8) % 2, 2, epochs=1) for _ in range(2))
        >>> torch.equal(first.head.weight, again.head.weight)
        True
    """
    check_int(epochs, "epochs", minimum=1)
    if images.dim() != 4 or targets.shape != images.shape[:1]:
        raise ValueError(f"`images` must be (N, C, H, W) and `targets` (N,), got {tuple(images.shape)} and "
                         f"{tuple(targets.shape)}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(classes, images.shape[1]).to(images.device)
    order = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    with torch.enable_grad():
        for _ in tqdm(range(epochs), desc="small CNN", unit="epoch", leave=False, disable=not progress):
            for index in torch.randperm(len(images), generator=order).split(batch_size):
                index = index.to(images.device)
                loss = F.cross_entropy(net(images[index]), targets[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return net.eval()


def classify(net: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The class ``net`` names for each of ``images`` (N,): argmax of its logits, in batches, without gradients.

    Example:
        >>> classify(nn.Flatten(), torch.tensor([[[[0.0, 2.0]]], [[[1.0, 0.0]]]])).tolist()
        [1, 0]
    """
    with torch.no_grad():
        return torch.cat([net(chunk).argmax(1) for chunk in images.split(batch_size)])


class Observed(NamedTuple):
    """A machine observer's accuracy on the model's ``errors`` (``None``: it made none), their number
    ``n_errors``, and its accuracy ``overall`` on every scored image.
    """

    errors: float | None
    n_errors: int
    overall: float


def machine_observer(fit_images: torch.Tensor, fit_decisions: torch.Tensor, score_images: torch.Tensor,
                     score_decisions: torch.Tensor, score_labels: torch.Tensor, classes: int,
                     epochs: int = OBSERVER_EPOCHS, seed: int = 0, progress: bool = False) -> Observed:
    """The study's stand-in: an observer (:class:`SmallCNN`) trained to predict the model's decision ŷ — not the
    label — from an explanation image alone, on one part of held-out images, then scored on a disjoint part:

        errors  = |{i ∈ W : o(e_i) = ŷ_i}| / |W|,   W = {i scored : ŷ_i ≠ y_i}     (the model's errors)
        overall = |{i scored : o(e_i) = ŷ_i}| / |scored|

    The observer is seeded by ``seed`` (the same instrument for every model measured) and trained for
    ``epochs``, both fixed before any run.

    Example:
        >>> bright = torch.rand(40, 1, 1, 1).round()   # the "model" decides by brightness
        >>> images, decisions = bright.expand(40, 3, 8, 8), bright.flatten().long()
        >>> labels = torch.zeros(40, dtype=torch.long)  # it is wrong wherever it says 1
        >>> seen = machine_observer(images[:20], decisions[:20], images[20:], decisions[20:], labels[20:], 2, epochs=20)
        >>> seen.errors, seen.n_errors == int(decisions[20:].sum())
        (1.0, True)
    """
    observer = fit_small_cnn(fit_images, fit_decisions, classes, epochs, seed, progress=progress)
    said = classify(observer, score_images).to(score_decisions.device)
    right = said == score_decisions
    wrong = score_decisions != score_labels
    count = int(wrong.sum())
    return Observed(float(right[wrong].float().mean()) if count else None, count, float(right.float().mean()))


def crops(texture: torch.Tensor, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``size`` × ``size`` crops (count, C, size, size) of a (C, h, w) texture, by one gather.

    Example:
        >>> crops(torch.arange(16.0).view(1, 4, 4), 2, 3, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 1, 2, 2])
    """
    if min(texture.shape[-2:]) < size:
        raise ValueError(f"a texture of {tuple(texture.shape[-2:])} cannot give {size} × {size} crops.")
    top = torch.randint(texture.shape[-2] - size + 1, (count,), generator=generator)
    left = torch.randint(texture.shape[-1] - size + 1, (count,), generator=generator)
    offsets = torch.arange(size)
    rows, columns = top[:, None, None] + offsets[None, :, None], left[:, None, None] + offsets[None, None, :]
    return texture[:, rows.to(texture.device), columns.to(texture.device)].transpose(0, 1)


def texture_renderings(textures: Sequence[torch.Tensor], size: int, per_texture: int = TEXTURE_RENDERINGS,
                       seed: int = 0, grey: float = GREY) -> tuple[torch.Tensor, torch.Tensor]:
    """Renderings of each texture t as an explanation shows it, with their texture indices:

        r = m ⊙ blur_f(crop(t)) + (1 − m) ⊙ g,   m = up(u) / max up(u),  u ~ U[0, 1]^(k × k)

    crop: a random ``size`` × ``size`` crop; blur_f: average pooling by f ∈ :data:`BLUR_FACTORS` and bilinear
    upsampling back (a decoder's reconstruction is blurred); m: a random saliency like a Grad-CAM at a k × k
    layer, k ∈ :data:`SALIENCY_GRIDS` (k = 1: m = 1, the texture alone); g: PV's grey. f and k cycle over the
    renderings of each texture, so every texture has each blur and each grid equally often.

    Example:
        >>> images, targets = texture_renderings([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)], 4, per_texture=3)
        >>> tuple(images.shape), targets.tolist(), bool(images.min() >= 0 and images.max() <= 1)
        ((6, 3, 4, 4), [0, 0, 0, 1, 1, 1], True)
    """
    check_int(per_texture, "per_texture", minimum=1)
    generator = torch.Generator().manual_seed(seed)
    rendered = torch.cat([crops(texture, size, per_texture, generator) for texture in textures])
    targets = torch.arange(len(textures)).repeat_interleave(per_texture)
    slot = torch.arange(per_texture).repeat(len(textures))
    blur = torch.tensor(BLUR_FACTORS)[slot % len(BLUR_FACTORS)]
    grid = torch.tensor(SALIENCY_GRIDS)[(slot // len(BLUR_FACTORS)) % len(SALIENCY_GRIDS)]
    for factor in BLUR_FACTORS[1:]:
        chosen = blur == factor
        pooled = F.avg_pool2d(rendered[chosen], factor, ceil_mode=True)
        rendered[chosen] = F.interpolate(pooled, size=(size, size), mode="bilinear", align_corners=False)
    saliency = torch.ones(len(rendered), 1, size, size)
    for side in SALIENCY_GRIDS[1:]:
        chosen = grid == side
        noise = torch.rand(int(chosen.sum()), 1, side, side, generator=generator)
        saliency[chosen] = unit_saliency(F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False))
    return perception_visualization(rendered, saliency, grey).clamp(0, 1), targets


def texture_classifier(textures: Sequence[torch.Tensor], size: int, per_texture: int = TEXTURE_RENDERINGS,
                       epochs: int = TEXTURE_EPOCHS, seed: int = 0, progress: bool = False) -> SmallCNN:
    """A :class:`SmallCNN` that names which of ``textures`` an image shows, trained on
    :func:`texture_renderings` (sharp and blurred crops under random saliencies over grey: the forms in which
    PV and the Grad-CAM overlay show a texture).

    Example:
        >>> flat = [torch.full((3, 8, 8), value) for value in (0.1, 0.9)]
        >>> net = texture_classifier(flat, 8, per_texture=8, epochs=20)
        >>> classify(net, torch.stack([torch.full((3, 8, 8), 0.9), torch.full((3, 8, 8), 0.1)])).tolist()
        [1, 0]
    """
    images, targets = texture_renderings(textures, size, per_texture, seed)
    device = textures[0].device
    return fit_small_cnn(images.to(device), targets.to(device), len(textures), epochs, seed, progress=progress)


def texture_agreement(classifier: nn.Module, images: torch.Tensor, textures: torch.Tensor) -> float | None:
    """Share of images in which ``classifier`` reads the texture named in ``textures`` (N,):

        agreement = |{i : argmax T(e_i) = t_i}| / N

    With t_i the background texture tied to the class the model predicts, it asks whether the explanation
    shows *what* the model read; with t_i the image's own background, whether it shows the background at all.
    ``None`` for no image.

    Example:
        >>> texture_agreement(nn.Flatten(), torch.tensor([[[[0.0, 1.0]]], [[[1.0, 0.0]]]]), torch.tensor([1, 1]))
        0.5
    """
    if len(images) == 0:
        return None
    said = classify(classifier, images).to(textures.device)
    return float((said == textures).float().mean())

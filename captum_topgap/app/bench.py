"""``captum-topgap bench``: cost ratios measured in one run, as medians of interleaved A/B timings.

Each row times A and B alternately ``repeats`` times (after one warm-up of each) and reports
``ratio = median_i(a_i / b_i)`` next to its target, with the median seconds of A and B. Memory on CPU is
the bytes autograd saves for the backward pass (the dominant training memory; exact and repeatable),
on CUDA the peak allocated memory.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

Clock = Callable[[], float]


@dataclass
class Row:
    """One benchmark result."""

    ratio: float
    target: float
    a_s: float
    b_s: float
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """The row as printed by ``captum-topgap bench --json``."""
        return {"ratio": self.ratio, "target": self.target, "a_s": self.a_s, "b_s": self.b_s, **self.extra}


def interleaved(a: Callable[[], Any], b: Callable[[], Any], repeats: int = 5,
                clock: Clock = time.perf_counter) -> tuple[float, float, float]:
    """Median ratio of A/B timings taken alternately, and the median seconds of A and of B.

    Example:
        >>> ticks = iter(range(100))  # a clock reading 0, 1, 4, 9, …: A takes 1, 9, 17 and B 5, 13, 21 ticks
        >>> interleaved(lambda: None, lambda: None, repeats=3, clock=lambda: next(ticks) ** 2)
        (0.6923076923076923, 9, 13)
    """
    a(), b()
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(repeats):
        for fn, sink in ((a, ta), (b, tb)):
            start = clock()
            fn()
            sink.append(clock() - start)
    ratios = [x / y for x, y in zip(ta, tb, strict=True)]
    return statistics.median(ratios), statistics.median(ta), statistics.median(tb)


def saved_tensor_megabytes(step: Callable[[], Any]) -> float:
    """Megabytes autograd saves for backward while ``step`` runs (distinct storages counted once).

    Example:
        >>> x = torch.ones(1024, 256, requires_grad=True)
        >>> round(saved_tensor_megabytes(lambda: (x * x).sum().backward()), 2)
        1.0
    """
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values()) / 2 ** 20


def peak_megabytes(step: Callable[[], Any], device: torch.device) -> float:
    """Peak CUDA memory of ``step`` on a GPU, else :func:`saved_tensor_megabytes`."""
    if device.type != "cuda":
        return saved_tensor_megabytes(step)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def train_step(model: nn.Module, objective: Callable, images: torch.Tensor, labels: torch.Tensor) -> Callable[[], None]:
    """One SGD step of ``objective`` on a fixed batch, as a closure (the model is in train mode)."""
    from captum_topgap.data.transforms import Batch

    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.8)
    masks = torch.zeros(len(images), 1, *images.shape[-2:], device=images.device)  # all background: ReFF is active
    batch = Batch(images, labels, masks, torch.ones(len(images), dtype=torch.bool, device=images.device))

    def step() -> None:
        model.train()
        loss, _ = objective(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


REFERENCE = {"size": 48, "batch": 32, "repeats": 5}
"""The reference step that budgets are stated in: one training step of a timm ResNet-18 (10 classes) on a batch
of 32 images of 48 × 48 px, the median of 5 after one warm-up."""


def reference_step(device: str | torch.device = "cpu", repeats: int = REFERENCE["repeats"],
                   clock: Clock = time.perf_counter) -> float:
    """Seconds of this machine's reference step (:data:`REFERENCE`): budgets in reference steps × this number
    are this machine's seconds. A few seconds in all on 2 CPU cores.

    Example:
        >>> 0 < reference_step(repeats=1) < 60
        True
    """
    from captum_topgap.train.checkpoints import build_model
    from captum_topgap.train.objectives import CrossEntropy

    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(REFERENCE["batch"], 3, REFERENCE["size"], REFERENCE["size"], generator=generator).to(device)
    labels = (torch.arange(REFERENCE["batch"]) % 10).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        step = train_step(build_model("resnet18", num_classes=10).to(device), CrossEntropy(), images, labels)
    step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(clock() - start)
    return statistics.median(times)


def bench_topgap_cam(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """Top-GAP CAM (registry ``topgap_cam``) time / plain forward time of the same topgap_resnet18."""
    from captum_topgap.registry import get_method
    from captum_topgap.train.checkpoints import build_model

    model = build_model("topgap_resnet18", num_classes=10, k=64).to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    target = torch.arange(batch) % 10
    explainer = get_method("topgap_cam", model)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    ratio, a, b = interleaved(lambda: explainer.attribute(x, target=target), forward, repeats)
    return Row(ratio, 1.1, a, b)


def bench_topgap_train(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """Top-GAP training step / baseline training step, resnet18 backbone, same batch; and their memory."""
    from captum_topgap.train.checkpoints import build_model
    from captum_topgap.train.objectives import CrossEntropy, TopGAPObjective

    torch.manual_seed(0)
    x, y = torch.rand(batch, 3, size, size, device=device), torch.arange(batch, device=device) % 10
    topgap = train_step(build_model("topgap_resnet18", num_classes=10, k=64).to(device), TopGAPObjective(), x, y)
    baseline = train_step(build_model("resnet18", num_classes=10).to(device), CrossEntropy(), x, y)
    ratio, a, b = interleaved(topgap, baseline, repeats)
    a_mem, b_mem = peak_megabytes(topgap, device), peak_megabytes(baseline, device)
    return Row(ratio, 1.15, a, b, {"a_mem_mb": a_mem, "b_mem_mb": b_mem, "mem_ratio": a_mem / b_mem})


SECOND_ARCHITECTURES = ("topgap_efficientnet_b0", "topgap_efficientnet_lite0", "topgap_convnext_tiny")
"""The Top-GAP networks the poster also reports (EfficientNet, ConvNeXt) that the registry builds."""


def bench_topgap_architectures(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """A Top-GAP EfficientNet-B0 training step / a Top-GAP ResNet-18 step at the demo's reference size and batch
    (:data:`REFERENCE`, whatever ``size`` and ``batch``: the question is whether the spurious scenario's bias claim
    fits the default budget on another architecture); every one of :data:`SECOND_ARCHITECTURES` beside it.
    """
    from captum_topgap.train.checkpoints import build_model
    from captum_topgap.train.objectives import TopGAPObjective

    torch.manual_seed(0)
    side, count = REFERENCE["size"], REFERENCE["batch"]
    x, y = torch.rand(count, 3, side, side, device=device), torch.arange(count, device=device) % 10

    def step(name: str) -> Callable[[], None]:
        return train_step(build_model(name, num_classes=10, k=1 / 16).to(device), TopGAPObjective(), x, y)

    resnet = step("topgap_resnet18")
    extra = {}
    for name in SECOND_ARCHITECTURES:
        ratio, seconds, extra["topgap_resnet18_s"] = interleaved(step(name), resnet, repeats)
        extra[f"{name}_ratio"], extra[f"{name}_s"] = ratio, seconds
    first = SECOND_ARCHITECTURES[0]
    return Row(extra[f"{first}_ratio"], 3.0, extra[f"{first}_s"], extra["topgap_resnet18_s"], extra)


RESOLUTIONS = {"os16": (48, 16), "os8": (48, 8), "px96": (96, 32), "px96_os16": (96, 16)}
"""The options for a finer explained layer (image side, timm ``output_stride``): ResNet-18's ``layer4`` is 3 × 3,
6 × 6, 3 × 3 and 6 × 6 with them, against 2 × 2 at the reference's 48 px and stride 32."""


def bench_resolution(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """A ResNet-18 training step with ``output_stride=8`` (a 6 × 6 ``layer4`` at 48 px) / the reference step, at the
    reference's size and batch whatever ``size`` and ``batch`` (the question is what the object scenario would cost
    at 6 × 6); every option of :data:`RESOLUTIONS` beside it, each with its ``layer4`` side.
    """
    from timm.models.resnet import ResNet

    from captum_topgap.train.checkpoints import build_model
    from captum_topgap.train.objectives import CrossEntropy

    torch.manual_seed(0)
    count = REFERENCE["batch"]
    y = torch.arange(count, device=device) % 10

    def step(side: int, stride: int) -> tuple[Callable[[], None], int]:
        model = build_model("resnet18", num_classes=10, output_stride=stride).to(device)
        x = torch.rand(count, 3, side, side, device=device)
        with torch.no_grad():
            grid = int(cast(ResNet, model).forward_features(x[:1]).shape[-1])
        return train_step(model, CrossEntropy(), x, y), grid

    reference, _ = step(REFERENCE["size"], 32)
    extra: dict[str, float] = {}
    for name, (side, stride) in RESOLUTIONS.items():
        option, grid = step(side, stride)
        extra[f"{name}_ratio"], extra[f"{name}_s"], extra["reference_s"] = interleaved(option, reference, repeats)
        extra[f"{name}_layer4_side"] = float(grid)
    return Row(extra["os8_ratio"], 3.0, extra["os8_s"], extra["reference_s"], extra)


def bench_reff_train(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """ReFF training step (4 stages, double back-propagation) / plain step, resnet18, same batch; memory too."""
    from captum_topgap.train.checkpoints import build_model
    from captum_topgap.train.losses import ReFF
    from captum_topgap.train.objectives import CrossEntropy, ReFFObjective

    torch.manual_seed(0)
    side = max(32, size // 2)
    x, y = torch.rand(batch, 3, side, side, device=device), torch.arange(batch, device=device) % 10
    reff_model = build_model("resnet18", num_classes=10).to(device)
    reff = train_step(reff_model, ReFFObjective(ReFF(reff_model)), x, y)
    baseline = train_step(build_model("resnet18", num_classes=10).to(device), CrossEntropy(), x, y)
    ratio, a, b = interleaved(reff, baseline, repeats)
    a_mem, b_mem = peak_megabytes(reff, device), peak_megabytes(baseline, device)
    return Row(ratio, 3.0, a, b, {"a_mem_mb": a_mem, "b_mem_mb": b_mem, "mem_ratio": a_mem / b_mem})


def bench_abn_train(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """ABN training step (both branches + the attention-map term, γ = 10) / plain step, resnet18, same batch;
    memory too. ABN runs a stride-1 copy of ``layer4`` at ``layer3``'s resolution: 4 × that stage's positions,
    about as many FLOPs as the rest of the network — target 2.5.

    Example:
        >>> bench_abn_train(64, 2, 1, torch.device("cpu")).target
        2.5
    """
    from captum_topgap.train.checkpoints import build_model
    from captum_topgap.train.objectives import ABNObjective, CrossEntropy

    torch.manual_seed(0)
    x, y = torch.rand(batch, 3, size, size, device=device), torch.arange(batch, device=device) % 10
    abn = train_step(build_model("abn_resnet18", num_classes=10).to(device), ABNObjective(), x, y)
    baseline = train_step(build_model("resnet18", num_classes=10).to(device), CrossEntropy(), x, y)
    ratio, a, b = interleaved(abn, baseline, repeats)
    a_mem, b_mem = peak_megabytes(abn, device), peak_megabytes(baseline, device)
    return Row(ratio, 2.5, a, b, {"a_mem_mb": a_mem, "b_mem_mb": b_mem, "mem_ratio": a_mem / b_mem})


ANNOTATOR_STEPS = 20
"""Optimiser steps of each pseudo-annotator the bench fits (the few-annotations scenario's are its budget's)."""


def bench_annotator(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """Seconds to fit ReFF's pix2pix pseudo-annotator on n = 50 / on n = 1 annotated 48-px images for the same
    number of steps (:func:`~captum_topgap.train.workflows.annotator_epochs_for`): the cost does not grow with n
    beyond the batch, which holds min(n, 4) images (target 2.0); ``n{n}_s`` is each n's median fit time,
    ``per_step_s`` the n = 1 fit's per step.

    Example (the epochs each n gets for the same steps; the row itself fits six annotators):
        >>> from captum_topgap.train.workflows import annotator_epochs_for
        >>> [annotator_epochs_for(n, ANNOTATOR_STEPS) for n in (1, 10, 50)]
        [20, 7, 2]
    """
    from captum_topgap.models import PseudoAnnotator
    from captum_topgap.train.workflows import ANNOTATOR_BATCH, annotator_epochs_for

    side = 48  # the scenarios' Textured MNIST size: the annotator runs at the training images' size
    generator = torch.Generator().manual_seed(0)
    samples = [(torch.rand(3, side, side, generator=generator), 0, (torch.rand(1, side, side, generator=generator)
                                                                   > 0.5).float()) for _ in range(50)]

    def fit(n: int) -> Callable[[], None]:
        def run() -> None:
            PseudoAnnotator(size=side).fit(samples[:n], epochs=annotator_epochs_for(n, ANNOTATOR_STEPS),
                                           batch_size=ANNOTATOR_BATCH, progress=False)
        return run

    ratio, a, b = interleaved(fit(50), fit(1), repeats)
    middle = interleaved(fit(10), fit(1), repeats)[1]
    return Row(ratio, 2.0, a, b, {"n1_s": b, "n10_s": middle, "n50_s": a, "per_step_s": b / ANNOTATOR_STEPS})


def bench_augmented(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """Augmented Grad-CAM (L = 16, fast solver) / one batched Grad-CAM of the same 16 augmented images."""
    from captum_topgap.methods.augmented import sample_augmentations, warp
    from captum_topgap.registry import get_method
    from captum_topgap.train.checkpoints import build_model

    model = build_model("resnet18", num_classes=10).to(device).eval()
    x = torch.rand(1, 3, size, size, device=device)
    augmented = get_method("augmented_gradcam", model, n_augmentations=16, solver="primal_dual", batch_size=16)
    gradcam = get_method("gradcam", model, upsample=False)
    theta = sample_augmentations(16, 0.5, 30.0 * size / 224, (size, size), device=device)
    copies = warp(x.expand(16, -1, -1, -1), theta)
    ratio, a, b = interleaved(lambda: augmented.attribute(x, target=3),
                              lambda: gradcam.attribute(copies, target=3), repeats)
    return Row(ratio, 1.5, a, b)


def bench_solver(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """Primal-dual time to reach the Adam reference's final objective / Adam's time (200 iterations).

    The primal-dual time is that of the shortest whole run (coarse warm start included) whose result is
    at or below Adam's final objective.
    """
    from captum_topgap.methods.augmented import sample_augmentations, super_resolve, warp

    side = size // 4
    generator = torch.Generator().manual_seed(0)
    truth = (torch.rand(1, 1, side // 8, side // 8, generator=generator) > 0.5).float()
    truth = torch.nn.functional.interpolate(truth, size=(side, side), mode="nearest").to(device)
    theta = sample_augmentations(16, 0.5, 30.0 * side / 224, (side, side), device=device)
    g = torch.nn.functional.interpolate(warp(truth.expand(16, -1, -1, -1), theta), size=(side // 8, side // 8),
                                        mode="bilinear", antialias=True, align_corners=False)[None]
    g = g / g.flatten(2).max(2).values.clamp_min(1e-12)[..., None, None, None]
    start = time.perf_counter()
    _, adam = super_resolve(g, theta, (side, side), solver="adam")
    adam_s = time.perf_counter() - start
    for iterations in (2, 5, 10, 20, 50, 100):  # the shortest full run (warm start included) that gets there
        start = time.perf_counter()
        _, fast = super_resolve(g, theta, (side, side), solver="primal_dual", iterations=iterations, tol=0.0)
        fast_s = time.perf_counter() - start
        if fast[-1] <= adam[-1]:
            break
    return Row(fast_s / adam_s, 0.2, fast_s, adam_s,
               {"adam_objective": adam[-1], "fast_objective": fast[-1], "fast_iterations": iterations})


def bench_recipro(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """Recipro-CAM / pytorch-grad-cam ScoreCAM on the same layer (layer4 of resnet18), same images."""
    from captum_topgap.registry import get_method
    from captum_topgap.train.checkpoints import build_model

    model = build_model("resnet18", num_classes=10).to(device).eval()
    x = torch.rand(2, 3, size, size, device=device)
    recipro = get_method("recipro_cam", model, "layer4")
    scorecam = get_method("scorecam", model, "layer4")
    ratio, a, b = interleaved(lambda: recipro.attribute(x, target=[1, 2]),
                              lambda: scorecam.attribute(x, target=[1, 2]), max(1, repeats // 3))
    return Row(ratio, 0.2, a, b)


def bench_erf(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """ERF of 64 CAM positions of topgap_resnet18 in one batched backward / 64 single backward passes."""
    from captum_topgap.methods.erf import erf_at
    from captum_topgap.train.checkpoints import build_model

    side = max(32, size // 2)
    model = build_model("topgap_resnet18", num_classes=10, k=4).to(device).eval()
    head = dict(model.named_modules())["head"]
    x = torch.rand(1, 3, side, side, device=device)
    cam = side // 4
    positions = [(i * cam // 8, j * cam // 8) for i in range(8) for j in range(8)]

    def one_by_one() -> None:
        for position in positions:
            erf_at(model, x, head, [position])

    ratio, a, b = interleaved(lambda: erf_at(model, x, head, positions), one_by_one, max(1, repeats // 2))
    return Row(ratio, 0.2, a, b)


OVERHEAD_REPEATS = 21
"""Repeats of the two registry-overhead rows at least: their calls take 20–50 ms, the contract's own cost is a
few percent of that, and a median over 7 ratios moved by ± 3 % from run to run (over 21: ± 1 %)."""


def bench_registry_gradcam(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """``get_method("gradcam")`` / pytorch-grad-cam's ``GradCAM`` called directly, resnet18, same maps."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from captum_topgap.registry import get_method
    from captum_topgap.train.checkpoints import build_model

    model = build_model("resnet18", num_classes=10).to(device).eval()
    x = torch.rand(batch // 2, 3, size // 2, size // 2, device=device)
    labels = [i % 10 for i in range(len(x))]
    ours = get_method("gradcam", model, "layer4")
    theirs = GradCAM(model, [model.layer4])
    targets = [ClassifierOutputTarget(label) for label in labels]
    ratio, a, b = interleaved(lambda: ours.attribute(x, target=labels),
                              lambda: theirs(input_tensor=x, targets=targets), max(repeats, OVERHEAD_REPEATS))
    theirs.activations_and_grads.release()
    return Row(ratio, 1.05, a, b)


def bench_registry_layer_gradcam(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """``get_method("layer_gradcam")`` / Captum's ``LayerGradCam`` + ``LayerAttribution.interpolate``."""
    from captum.attr import LayerAttribution, LayerGradCam

    from captum_topgap.registry import get_method
    from captum_topgap.train.checkpoints import build_model

    model = build_model("resnet18", num_classes=10).to(device).eval()
    x = torch.rand(batch // 2, 3, size // 2, size // 2, device=device)
    labels = torch.arange(len(x), device=device) % 10
    ours = get_method("layer_gradcam", model, "layer4")
    theirs = LayerGradCam(model, model.layer4)

    def captum() -> torch.Tensor:
        return LayerAttribution.interpolate(theirs.attribute(x, target=labels), x.shape[-2:], "bilinear")

    ratio, a, b = interleaved(lambda: ours.attribute(x, target=labels), captum, max(repeats, OVERHEAD_REPEATS))
    return Row(ratio, 1.05, a, b)


def bench_perception(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """Perception Visualization (registry ``perception_visualization``) / Grad-CAM on one batch at the same layer
    (layer4) of the same resnet18 weights; target 1.5: PV is one forward, one backward to the layer and one decoder
    pass, Grad-CAM the first two. The Grad-CAM is the project's torch-native core (``differentiable_gradcam``, the
    one PV computes its s_c with) on an unfrozen copy of the classifier: on the decoder's frozen classifier it
    would trace its forward twice (``grad_cam_maps`` repeats it on inputs that require gradients when no
    parameter does). ``decoder_s`` is the median seconds of one decoder pass x̂ = D(E(x)) on the batch.

    Example:
        >>> row = bench_perception(64, 2, 1, torch.device("cpu"))
        >>> row.target, sorted(row.as_dict())
        (1.5, ['a_s', 'b_s', 'decoder_s', 'ratio', 'target'])
    """
    import copy

    from captum_topgap.models import PerceptionDecoder
    from captum_topgap.registry import get_method
    from captum_topgap.train.checkpoints import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10).to(device).eval()
    decoder = PerceptionDecoder(copy.deepcopy(model), "layer4", image_size=size).to(device).eval()
    x = torch.rand(batch, 3, size, size, device=device)
    target = torch.arange(batch, device=device) % 10
    pv = get_method("perception_visualization", decoder.classifier, decoder=decoder)
    gradcam = get_method("differentiable_gradcam", model, "layer4")
    ratio, a, b = interleaved(lambda: pv.attribute(x, target=target), lambda: gradcam.attribute(x, target=target),
                              repeats)
    decoder_times = []
    with torch.no_grad():
        latent = decoder.encode(x)
        for _ in range(repeats):
            start = time.perf_counter()
            decoder.decode(latent)
            decoder_times.append(time.perf_counter() - start)
    return Row(ratio, 1.5, a, b, {"decoder_s": statistics.median(decoder_times)})


def bench_augmented_defaults(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """Seconds per image of ``augmented_gradcam`` with its defaults (the row's ratio, target 10 s), beside one
    Grad-CAM of that image (b_s).
    """
    from captum_topgap.registry import get_method
    from captum_topgap.train.checkpoints import build_model

    model = build_model("resnet18", num_classes=10).to(device).eval()
    x = torch.rand(1, 3, size, size, device=device)
    augmented, gradcam = get_method("augmented_gradcam", model), get_method("gradcam", model)
    _, a, b = interleaved(lambda: augmented.attribute(x, target=3), lambda: gradcam.attribute(x, target=3), 1)
    return Row(a, 10.0, a, b)


def bench_audit(size: int, batch: int, repeats: int, device: torch.device) -> Row:
    """Seconds per image of each attack of the robustness audit's cascade on the demo's robustness model
    (``topgap_preact_resnet18``, 32 px), where no image breaks (ε = 1e-4), so every step or query runs: the
    worst case of an image that survives the whole cascade. The ratio is their sum (target: 20 s per image);
    b_s is one forward-backward pass per image. ``quick`` times a twentieth of each attack's steps on one image,
    scaled up.
    """
    from captum_topgap.evaluate.audit import AUDIT_ATTACKS
    from captum_topgap.evaluate.robustness import AttackSpec, adversarial_examples
    from captum_topgap.train.checkpoints import build_model

    model = build_model("topgap_preact_resnet18", num_classes=10, k=0.25).to(device).eval()
    scale = 20 if size < 224 else 1
    images = torch.rand(1 if scale > 1 else 4, 3, 32, 32, device=device)
    labels = model(images).argmax(1).detach()
    per_image = {}
    for name in AUDIT_ATTACKS:
        spec = AttackSpec.parse(name)
        start = time.perf_counter()
        adversarial_examples(model, images, labels, f"{spec.kind}{max(1, spec.steps // scale)}", eps=1e-4)
        per_image[f"{name}_s_per_image"] = (time.perf_counter() - start) * scale / len(images)
    x = images.clone().requires_grad_(True)
    start = time.perf_counter()
    model(x).logsumexp(1).sum().backward()
    step = (time.perf_counter() - start) / len(images)
    total = sum(per_image.values())
    return Row(total, 20.0, total, step, per_image)


BENCHMARKS: dict[str, Callable[..., Row]] = {
    "topgap_cam_vs_forward": bench_topgap_cam,
    "topgap_train_step_vs_baseline": bench_topgap_train,
    "topgap_efficientnet_b0_step_vs_resnet18": bench_topgap_architectures,
    "resnet18_output_stride8_step_vs_reference": bench_resolution,
    "reff_train_step_vs_baseline": bench_reff_train,
    "abn_train_step_vs_baseline": bench_abn_train,
    "pseudo_annotator_fit_n50_vs_n1": bench_annotator,
    "augmented_gradcam_vs_batched_gradcam": bench_augmented,
    "primal_dual_vs_adam_to_same_objective": bench_solver,
    "recipro_cam_vs_scorecam": bench_recipro,
    "erf_64_positions_batched_vs_loop": bench_erf,
    "registry_gradcam_vs_grad_cam": bench_registry_gradcam,
    "registry_layer_gradcam_vs_captum": bench_registry_layer_gradcam,
    "perception_visualization_vs_gradcam": bench_perception,
    "augmented_gradcam_defaults_seconds_per_image": bench_augmented_defaults,
    "robustness_audit_seconds_per_image": bench_audit,
}


def run(only: str | None = None, quick: bool = False, repeats: int | None = None,
        device: str = "cpu") -> dict[str, dict[str, float]]:
    """Run every benchmark (or ``only`` one) and return ``{name: row}``.

    ``quick`` uses 64 × 64 images and batch 4 (for tests); the default is 224 × 224, batch 8.
    """
    if only is not None and only not in BENCHMARKS:
        raise ValueError(f"`--only` must be one of {sorted(BENCHMARKS)}, got {only!r}.")
    size, batch = (64, 4) if quick else (224, 8)
    repeats = repeats or (3 if quick else 7)
    names = [only] if only else list(BENCHMARKS)
    return {name: BENCHMARKS[name](size, batch, repeats, torch.device(device)).as_dict() for name in names}

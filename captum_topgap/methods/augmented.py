"""Augmented Grad-CAM (Morbidelli et al., ICASSP 2020): heat-map super-resolution from augmented copies.

L roto-translations A_l of the input (A_0 = identity) give low-resolution maps g_l = CAM(A_l x), each
divided by its maximum. The high-resolution map solves

    min_h  ½ Σ_l ‖D A_l h − g_l‖² + λ · TV_ℓ1(h) + (μ/2) ‖h‖²,   TV_ℓ1(h) = Σ |∂_x h| + |∂_y h|

at input resolution, with D a bilinear (antialiased) downsampling to the CAM size and A_l a bilinear warp
with zero fill. Defaults are the authors': L = 100, θ ~ U(−0.5, 0.5) rad, shifts ~ U(−30, 30) px at
224 px (scaled with the image), λ = 0.002·L, μ = 0.0001·L, h₀ = 0, Adam with lr 1e-3 for 200 steps.
``solver="primal_dual"`` minimises the same objective with the Condat–Vũ primal-dual method (TV handled
exactly through its dual, step sizes from a power iteration); ``registration="max"`` / ``"avg"`` are
the authors' baselines (g_l upsampled, warped back with A_l⁻¹, fused pixel-wise).

Example:
    >>> g = torch.zeros(1, 4, 1, 4, 4); g[..., 1:3, 1:3] = 1.0
    >>> theta = sample_augmentations(4, 0.0, 0.0, (16, 16), seed=0)
    >>> h, history = super_resolve(g, theta, (16, 16), solver="primal_dual", iterations=50)
    >>> tuple(h.shape), bool(history[-1] < history[0])
    ((1, 1, 16, 16), True)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from captum_topgap._checks import check_choice, check_float, check_int
from captum_topgap.attribution import LayerMethod
from captum_topgap.methods.gradcam import Score, check_score, grad_cam_maps
from captum_topgap.registry import method_spec, register_method

BaseCAM = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``base(images, labels, owners) -> (B, 1, h, w)``: the low-resolution maps of augmented copies, ``owners`` the
index of the input image each copy was made from."""


def sample_augmentations(n: int, max_rotation: float, max_shift: float, size: tuple[int, int],
                         seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` affine matrices (n, 2, 3) for ``affine_grid``: the identity, then random roto-translations.

    θ ~ U(−max_rotation, max_rotation) radians, shifts ~ U(−max_shift, max_shift) pixels.

    Example:
        >>> theta = sample_augmentations(3, 0.5, 30, (224, 224))
        >>> theta.shape, torch.equal(theta[0].abs(), torch.eye(2, 3))
        (torch.Size([3, 2, 3]), True)
    """
    generator = torch.Generator().manual_seed(seed)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * max_rotation
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * max_shift
    angle[0], shift[0] = 0.0, 0.0
    height, width = size
    cos, sin = torch.cos(angle), torch.sin(angle)
    # normalised coordinates: a shift of s pixels is 2·s/size
    theta = torch.stack([torch.stack([cos, -sin * height / width, 2 * shift[:, 0] / width], 1),
                         torch.stack([sin * width / height, cos, 2 * shift[:, 1] / height], 1)], 1)
    return theta.to(device)


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """A_l x: bilinear warp of (B, C, H, W) images by (B, 2, 3) matrices, zero outside the frame."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def invert(theta: torch.Tensor) -> torch.Tensor:
    """The inverse affine maps of (B, 2, 3) matrices."""
    full = torch.cat([theta, torch.tensor([0.0, 0.0, 1.0], device=theta.device).expand(len(theta), 1, 3)], 1)
    return torch.linalg.inv(full)[:, :2]


def _forward_model(h: torch.Tensor, theta: torch.Tensor, low: tuple[int, int]) -> torch.Tensor:
    """D A_l h for every l: (N, 1, H, W) -> (N, L, 1, h, w)."""
    n, length = h.shape[0], theta.shape[0]
    warped = warp(h.repeat_interleave(length, 0), theta.repeat(n, 1, 1))
    return F.interpolate(warped, size=low, mode="bilinear", align_corners=False, antialias=True).view(
        n, length, 1, *low)


def _grad(h: torch.Tensor) -> torch.Tensor:
    """Forward differences (∂_x h, ∂_y h) with zero at the far border: (N, 2, H, W)."""
    dx = F.pad(h[..., :, 1:] - h[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(h[..., 1:, :] - h[..., :-1, :], (0, 0, 0, 1))
    return torch.cat([dx, dy], 1)


def _grad_adjoint(p: torch.Tensor) -> torch.Tensor:
    """∇ᵀ p, the adjoint of :func:`_grad` (a negative divergence)."""
    px, py = p[:, :1], p[:, 1:]
    dx = F.pad(px[..., :, :-1], (1, 0, 0, 0)) - F.pad(px[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(py[..., :-1, :], (0, 0, 1, 0)) - F.pad(py[..., :-1, :], (0, 0, 0, 1))
    return dx + dy


def objective(h: torch.Tensor, g: torch.Tensor, theta: torch.Tensor, lambda_tv: float, mu: float) -> torch.Tensor:
    """Per-image value of the super-resolution objective (N,)."""
    fit = 0.5 * (_forward_model(h, theta, (g.shape[-2], g.shape[-1])) - g).pow(2).flatten(1).sum(1)
    return fit + lambda_tv * _grad(h).abs().flatten(1).sum(1) + 0.5 * mu * h.pow(2).flatten(1).sum(1)


def _smooth_gradient(h: torch.Tensor, g: torch.Tensor, theta: torch.Tensor,
                     mu: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the smooth part ½Σ‖DA_l h − g_l‖² + (μ/2)‖h‖², and that part's value per image."""
    with torch.enable_grad():
        h = h.detach().requires_grad_(True)
        value = 0.5 * (_forward_model(h, theta, (g.shape[-2], g.shape[-1])) - g).pow(2).flatten(1).sum(1)
        value = value + 0.5 * mu * h.pow(2).flatten(1).sum(1)
        return torch.autograd.grad(value.sum(), h)[0], value.detach()


def _lipschitz(g: torch.Tensor, theta: torch.Tensor, size: tuple[int, int], mu: float, steps: int = 6) -> float:
    """Largest eigenvalue of (Σ_l A_lᵀDᵀDA_l + μ I) by power iteration (the smooth part's Lipschitz
    constant), with a 20 % margin for the few steps.
    """
    v = torch.rand(1, 1, *size, generator=torch.Generator().manual_seed(0)).to(g.device)
    zero = torch.zeros(1, *g.shape[1:], device=g.device)
    value = 1.0
    for _ in range(steps):
        w = _smooth_gradient(v, zero, theta, mu)[0]
        value = float(w.norm() / v.norm())
        v = w / w.norm()
    return value * 1.2


def _primal_dual(h: torch.Tensor, g: torch.Tensor, theta: torch.Tensor, lambda_tv: float, mu: float,
                 iterations: int, tol: float, history: list[float]) -> torch.Tensor:
    """Condat–Vũ iterations from ``h``: a gradient step on the smooth part, a projected ascent on TV's dual."""
    sigma = 1.0
    tau = 1.0 / (_lipschitz(g, theta, (h.shape[-2], h.shape[-1]), mu) / 2 + sigma * 8.0)
    dual = torch.zeros(h.shape[0], 2, *h.shape[-2:], device=h.device)
    active = torch.ones(h.shape[0], dtype=torch.bool, device=h.device)
    previous = None
    for _ in range(iterations):
        gradient, smooth = _smooth_gradient(h, g, theta, mu)
        value = smooth + lambda_tv * _grad(h).abs().flatten(1).sum(1)
        history.append(float(value.mean()))
        if tol > 0 and previous is not None:  # each image stops on its own decrease: no image waits for another
            active &= previous - value >= tol * value.abs()
            if not bool(active.any()):
                break
        previous = value
        step = h - tau * (gradient + _grad_adjoint(dual))
        moving = active.view(-1, 1, 1, 1)
        dual = torch.where(moving, (dual + sigma * _grad(2 * step - h)).clamp(-lambda_tv, lambda_tv), dual)
        h = torch.where(moving, step, h)
    return h


def super_resolve(g: torch.Tensor, theta: torch.Tensor, size: tuple[int, int], lambda_tv: float | None = None,
                  mu: float | None = None, solver: str = "adam", iterations: int | None = None,
                  lr: float = 1e-3, tol: float | None = None) -> tuple[torch.Tensor, list[float]]:
    """Solve the super-resolution problem for (N, L, 1, h, w) maps; returns h (N, 1, H, W) and the mean
    objective of the iterates at full resolution (the first entry is the starting point, the last the
    returned h).

    ``solver="adam"`` (the reference: Adam, lr 1e-3, 200 iterations from zero) or ``"primal_dual"``
    (Condat–Vũ, at most 50 iterations by default; when the image is at least 8× the CAM it first solves
    the problem at 1/4 resolution and refines at full resolution for a fifth of the iterations, at least
    10). ``tol`` > 0 stops an image when its objective's relative decrease over one iteration falls below it;
    each image stops on its own, so its map does not depend on the other images of the batch.
    """
    length = theta.shape[0]
    lambda_tv = 0.002 * length if lambda_tv is None else lambda_tv
    mu = 0.0001 * length if mu is None else mu
    h = torch.zeros(g.shape[0], 1, *size, device=g.device)
    history: list[float] = []
    tol = (0.0 if solver == "adam" else 1e-3) if tol is None else tol
    if solver == "adam":
        h.requires_grad_(True)
        optimizer = torch.optim.Adam([h], lr=lr)
        for _ in range(iterations or 200):
            with torch.enable_grad():
                loss = objective(h, g, theta, lambda_tv, mu)
                optimizer.zero_grad()
                loss.sum().backward()
            history.append(float(loss.detach().mean()))
            optimizer.step()
        h = h.detach()
    elif solver == "primal_dual":
        coarse = (size[0] // 4, size[1] // 4)
        if min(coarse) >= 2 * min((g.shape[-2], g.shape[-1])):
            # warm start: the same problem at 1/4 resolution (TV and μ rescaled to the coarse grid)
            h_coarse, _ = super_resolve(g, theta, coarse, 4 * lambda_tv, 16 * mu, solver, iterations, tol=tol)
            h = F.interpolate(h_coarse, size=size, mode="bilinear", align_corners=False)
            iterations = max(10, (iterations or 50) // 5)
        h = _primal_dual(h, g, theta, lambda_tv, mu, iterations or 50, tol, history)
    else:
        raise ValueError(f"`solver` must be 'adam' or 'primal_dual', got {solver!r}.")
    history.append(float(objective(h, g, theta, lambda_tv, mu).mean()))
    return h, history


def register_maps(g: torch.Tensor, theta: torch.Tensor, size: tuple[int, int], how: str) -> torch.Tensor:
    """Baselines: upsample each g_l, warp it back with A_l⁻¹ and fuse pixel-wise by ``"max"`` or ``"avg"``."""
    n, length = g.shape[:2]
    up = F.interpolate(g.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
    back = warp(up, invert(theta).repeat(n, 1, 1)).view(n, length, 1, *size)
    if how == "max":
        return back.max(1).values
    if how == "avg":
        return back.mean(1)
    raise ValueError(f"`registration` must be 'sr', 'max' or 'avg', got {how!r}.")


def augmented_cam(base: BaseCAM, inputs: torch.Tensor, target: torch.Tensor, n_augmentations: int = 100,
                  max_rotation: float = 0.5, max_shift: float | None = None, lambda_tv: float | None = None,
                  mu: float | None = None, solver: str = "primal_dual", iterations: int | None = None,
                  lr: float = 1e-3, tol: float | None = None, registration: str = "sr", batch_size: int = 64,
                  seed: int = 0) -> torch.Tensor:
    """Augmented CAM of ``inputs`` (N, C, H, W) for ``target`` (N,): (N, 1, H, W).

    ``base(images, targets, owners) -> (B, 1, h, w)`` computes the low-resolution maps (any layer method's
    core; ``owners``: each copy's input image); all N·L augmented copies go through it in batches of
    ``batch_size``. ``solver="adam"`` with ``iterations=200``
    is the authors' reference; the default primal-dual solver reaches a lower objective sooner
    (``captum-topgap bench``).
    """
    check_augmented_options(n_augmentations=n_augmentations, max_rotation=max_rotation, max_shift=max_shift,
                            lambda_tv=lambda_tv, mu=mu, solver=solver, iterations=iterations, lr=lr, tol=tol,
                            registration=registration, batch_size=batch_size, seed=seed)
    n, _, height, width = inputs.shape
    shift = 30.0 * width / 224 if max_shift is None else max_shift
    theta = sample_augmentations(n_augmentations, max_rotation, shift, (height, width), seed, inputs.device)
    copies = inputs.repeat_interleave(n_augmentations, 0)
    thetas = theta.to(inputs.dtype).repeat(n, 1, 1)
    labels = target.repeat_interleave(n_augmentations, 0)
    owners = torch.arange(n, device=inputs.device).repeat_interleave(n_augmentations)
    maps = [base(warp(copies[chunk], thetas[chunk]), labels[chunk], owners[chunk]).detach().float()
            for chunk in (slice(start, start + batch_size) for start in range(0, len(copies), batch_size))]
    g = torch.cat(maps).view(n, n_augmentations, 1, *maps[0].shape[-2:])
    g = g / g.flatten(2).max(2).values.clamp_min(1e-12)[..., None, None, None]
    if registration != "sr":
        return register_maps(g, theta, (height, width), registration).to(inputs.dtype)
    return super_resolve(g, theta, (height, width), lambda_tv, mu, solver, iterations, lr, tol)[0].to(inputs.dtype)


def check_augmented_options(**options: Any) -> dict[str, Any]:
    """The options of :func:`augmented_cam`, each checked against its range (unknown names refused).

    Example:
        >>> check_augmented_options(n_augmentations="ten")
        Traceback (most recent call last):
        ...
        ValueError: `n_augmentations` must be an integer ≥ 1, got 'ten' (str).
    """
    checks: dict[str, Callable[[Any, str], Any]] = {
        "n_augmentations": lambda v, k: check_int(v, k, minimum=1),
        "batch_size": lambda v, k: check_int(v, k, minimum=1),
        "iterations": lambda v, k: v if v is None else check_int(v, k, minimum=1),
        "seed": lambda v, k: check_int(v, k, minimum=0),
        "max_rotation": lambda v, k: check_float(v, k, minimum=0.0),
        "max_shift": lambda v, k: v if v is None else check_float(v, k, minimum=0.0),
        "lambda_tv": lambda v, k: v if v is None else check_float(v, k, minimum=0.0),
        "mu": lambda v, k: v if v is None else check_float(v, k, minimum=0.0),
        "tol": lambda v, k: v if v is None else check_float(v, k, minimum=0.0),
        "lr": lambda v, k: check_float(v, k, minimum=0.0, strict_minimum=True),
        "solver": lambda v, k: check_choice(v, k, ("adam", "primal_dual")),
        "registration": lambda v, k: check_choice(v, k, ("sr", "max", "avg")),
    }
    unknown = sorted(set(options) - set(checks))
    if unknown:
        raise ValueError(f"'augmented_gradcam' does not take the option(s) {unknown}; it takes {sorted(checks)} "
                         "and `base`.")
    return {name: checks[name](value, name) for name, value in options.items()}


@register_method("augmented_gradcam", origin="captum-topgap", kind="layer", aliases=("augmented_grad_cam",),
                 description="Augmented Grad-CAM: super-resolution from augmented copies (Morbidelli et al.)")
class AugmentedGradCAM(LayerMethod):
    """Augmented Grad-CAM as a Captum attribution: super-resolved maps from ``n_augmentations``
    roto-translated copies over any registered layer method ``base`` (``"gradcam"`` — this project's own
    Grad-CAM core —, ``"gradcam++"``, ``"layer_gradcam"``, …), whose core sees the copies in batches.

    Keyword arguments of :func:`augmented_cam` (``n_augmentations``, ``max_rotation``, ``max_shift``,
    ``lambda_tv``, ``mu``, ``solver``, ``iterations``, ``lr``, ``tol``, ``registration``, ``batch_size``,
    ``seed``) are set here or per call and checked (:func:`check_augmented_options`). Output: (N, 1, H, W)
    at input resolution (the super-resolved map is born there, so ``upsample`` changes nothing).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        ...                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> cam = AugmentedGradCAM(net, n_augmentations=4)
        >>> cam.layer_name, cam.attribute(torch.rand(1, 3, 8, 8), target=1).shape
        ('2', torch.Size([1, 1, 8, 8]))
    """

    method_name = "augmented_gradcam"

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, base: str = "gradcam",
                 upsample: bool = True, input_size: tuple[int, int, int] | None = None,
                 reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None, **options: Any) -> None:
        super().__init__(model, layer, upsample, input_size, reshape_transform)
        refusal = f"`base` must be a registered layer CAM such as 'gradcam' or 'gradcam++', got {base!r}"
        try:
            spec = method_spec(base)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{refusal}: {error}") from None
        if spec.kind != "layer" or spec.name in ("guided_gradcam", "augmented_gradcam"):
            raise ValueError(f"{refusal}.")
        self.base, self.options = spec.name, check_augmented_options(**options)
        self._base_method: LayerMethod | None = None

    @property
    def base_method(self) -> LayerMethod:
        """The registered ``base`` method at this layer (built once, on first use)."""
        if self._base_method is None:
            self._base_method = method_spec(self.base).load()(self.model, self.layer, upsample=False,
                                                              **({"reshape_transform": self.reshape_transform}
                                                                 if self.reshape_transform else {}))
        return self._base_method

    @property
    def target_score(self) -> str:
        """What ``target=c`` explains on each copy: the base's (class c's ``"logit"`` for Grad-CAM, the softmax
        ``"probability"`` for base='recipro_cam'); the grad-cam bridge reads it to explain ``ClassifierOutputTarget``.
        """
        return "logit" if self.base == "gradcam" else getattr(self.base_method, "target_score", "logit")

    def base_core(self, score: Score | None = None) -> BaseCAM:
        """``(images, labels, owners) -> (B, 1, h, w)`` of the base method at this layer (its object built once);
        a callable ``score`` (a pytorch-grad-cam target's scalar, :data:`~captum_topgap.methods.gradcam.Score`)
        is what the base differentiates on each copy, by the copy's own image.
        """
        if self.base == "gradcam":
            layer, network, reshape = self.layer, self.network, self.reshape_transform

            def own(images: torch.Tensor, labels: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
                return grad_cam_maps(network, images, labels, [layer], upsample=False, reshape=reshape,
                                     score=score or "logit", owners=owners)[1][0]

            return own
        base = self.base_method
        if score is not None and (not callable(score) or "score" not in inspect.signature(base.core).parameters):
            raise ValueError(f"`score` (a pytorch-grad-cam target other than ClassifierOutputTarget) is not available "
                             f"with base={self.base!r}: its maps explain a class index; use base='gradcam'.")

        def other(images: torch.Tensor, labels: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
            with base.bound(self._extra):
                if score is None or not callable(score):
                    return base.core(images, labels)
                function = score
                return base.core(images, labels, score=lambda logits, rows: function(logits, owners[rows]))

        return other

    def core(self, inputs: torch.Tensor, labels: torch.Tensor, score: Score | None = None,
             **options: Any) -> torch.Tensor:
        """The super-resolved map of ``labels`` (or of a callable ``score``) at the input's resolution."""
        if score is not None and not callable(score):
            raise ValueError(f"`score` of augmented_gradcam must be a function of the logits and the image index (a "
                             f"pytorch-grad-cam target through the bridge), got {score!r}.")
        check_score(score, self.method_name)
        return augmented_cam(self.base_core(score), inputs, labels,
                             **{**self.options, **check_augmented_options(**options)})

"""Top-k global average pooling (Top-GAP, Nieradzik et al. 2024).

    TopKPool_k(x)_{n,c} = (1/k) · Σ_{i ∈ top-k positions of x_{n,c}} x_{n,c,i}

k = H·W is global average pooling, k = 1 global max pooling; the gradient is 1/k on the k selected
positions and 0 elsewhere, so training pulls up only the k most class-relevant positions of the map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resolve_k(k: int | float, positions: int | None) -> int:
    """Number of positions kept: an int in [1, positions], or a float fraction in (0, 1] of them (rounded,
    at least 1). ``positions=None`` checks only what can be checked before the map size is known.

    Example:
        >>> resolve_k(64, 3136), resolve_k(0.5, 9), resolve_k(1.0, 9)
        (64, 4, 9)
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"`k` must be an int (positions) or a float fraction, got {type(k).__name__}.")
    if isinstance(k, float):
        if not 0.0 < k <= 1.0:
            raise ValueError(f"`k` as a fraction must be in (0, 1], got {k}; pass an int to count positions.")
        return max(1, round(k * (positions or 1)))
    if k < 1:
        raise ValueError(f"`k` must be at least 1 position, got {k}.")
    if positions is not None and k > positions:
        raise ValueError(f"`k` = {k} exceeds the {positions} positions of the map (H·W); use 1 ≤ k ≤ {positions} "
                         "or a float fraction in (0, 1].")
    return k


def top_k_pool(x: torch.Tensor, k: int | float) -> torch.Tensor:
    """Mean of the k largest values of each channel: (N, C, H, W) -> (N, C).

    Example:
        >>> x = torch.tensor([[[[1.0, 5.0], [3.0, 2.0]]]])
        >>> top_k_pool(x, 2), top_k_pool(x, 4), top_k_pool(x, 1)
        (tensor([[4.]]), tensor([[2.7500]]), tensor([[5.]]))
    """
    if x.dim() != 4:
        raise ValueError(f"TopKPool expects (N, C, H, W) maps, got shape {tuple(x.shape)}.")
    positions = x.shape[-2] * x.shape[-1]
    k = resolve_k(k, positions)
    if k == positions:
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
    flat = x.flatten(2)
    if k == 1:
        return flat.max(dim=-1).values
    return flat.topk(k, dim=-1, sorted=False).values.mean(dim=-1)


class TopKPool(nn.Module):
    """Module form of :func:`top_k_pool`; k is checked at forward time against the map's actual H·W.

    Args:
        k: positions kept per channel — an int in [1, H·W] or a float fraction in (0, 1].

    Example:
        >>> TopKPool(0.25)(torch.arange(16.0).view(1, 1, 4, 4))
        tensor([[13.5000]])
    """

    def __init__(self, k: int | float) -> None:
        super().__init__()
        resolve_k(k, None)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Top-k pooled maps (N, C) of ``x`` (N, C, H, W)."""
        return top_k_pool(x, self.k)

    def extra_repr(self) -> str:
        """``k=…`` in the module's repr."""
        return f"k={self.k}"

"""Top-k global average pooling (Top-GAP, Nieradzik et al. 2024).

    TopKPool_k(x)_{n,c} = (1/k) · Σ_{i ∈ top-k positions of x_{n,c}} x_{n,c,i}

k = H·W is global average pooling, k = 1 global max pooling; the gradient is 1/k on the k selected
positions and 0 elsewhere, so training pulls up only the k most class-relevant positions of the map.
A fraction k ∈ (0, 1] keeps ⌊k·H·W + ½⌋ positions (at least one). The pooling compiles with TorchScript.

k is part of the module's state: ``state_dict`` holds ``count`` and ``fraction``, and loading a state dict of
another k fails naming both values (a checkpoint from before k was stored loads as before).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


def resolve_k(k: int | float, positions: int | None) -> int:
    """Number of positions kept: an int in [1, positions], or a float fraction in (0, 1] of them (rounded
    half up, at least 1). ``positions=None`` checks only what can be checked before the map size is known.

    Example:
        >>> resolve_k(64, 3136), resolve_k(0.5, 9), resolve_k(1.0, 9)
        (64, 5, 9)
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"`k` must be an int (positions) or a float fraction, got {type(k).__name__}.")
    if isinstance(k, float):
        if not 0.0 < k <= 1.0:
            raise ValueError(f"`k` as a fraction must be in (0, 1], got {k}; pass an int to count positions.")
        return kept_positions(positions or 1, 0, k)
    if k < 1:
        raise ValueError(f"`k` must be at least 1 position, got {k}.")
    if positions is not None and k > positions:
        raise ValueError(f"`k` = {k} exceeds the {positions} positions of the map (H·W); use 1 ≤ k ≤ {positions} "
                         "or a float fraction in (0, 1].")
    return k


def kept_positions(positions: int, count: int, fraction: float) -> int:
    """K for a map of ``positions``: ``count`` when it is set (> 0), else ⌊fraction·positions + ½⌋, at least 1.

    Example:
        >>> kept_positions(144, 0, 1 / 16), kept_positions(144, 7, 0.0)
        (9, 7)
    """
    return count if count > 0 else max(1, int(fraction * positions + 0.5))


def pool_top_k(x: torch.Tensor, count: int, fraction: float) -> torch.Tensor:
    """The pooling itself (TorchScript-compatible): (N, C, H, W) -> (N, C); see :func:`kept_positions`.

    Example:
        >>> pool_top_k(torch.tensor([[[[1.0, 5.0], [3.0, 2.0]]]]), 2, 0.0)
        tensor([[4.]])
    """
    height, width = x.shape[-2], x.shape[-1]
    positions = height * width
    if count > positions:  # with the values: a scripted module's traceback shows this line, not them
        raise ValueError(f"TopKPool: k (a count of positions) is larger than the map's H·W positions: k = {count} "
                         f"for a {height} × {width} map ({positions} positions); use 1 ≤ k ≤ {positions}, or a float "
                         "fraction in (0, 1].")
    k = kept_positions(positions, count, fraction)
    if k >= positions:
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
    flat = x.flatten(2)
    if k == 1:
        return torch.amax(flat, dim=-1)
    return flat.topk(k, dim=-1, sorted=False)[0].mean(dim=-1)


def top_k_pool(x: torch.Tensor, k: int | float) -> torch.Tensor:
    """Mean of the k largest values of each channel: (N, C, H, W) -> (N, C), with checked arguments.

    Example:
        >>> x = torch.tensor([[[[1.0, 5.0], [3.0, 2.0]]]])
        >>> top_k_pool(x, 2), top_k_pool(x, 4), top_k_pool(x, 1)
        (tensor([[4.]]), tensor([[2.7500]]), tensor([[5.]]))
    """
    if x.dim() != 4:
        raise ValueError(f"TopKPool expects (N, C, H, W) maps, got shape {tuple(x.shape)}.")
    if not x.is_floating_point():
        raise TypeError(f"TopKPool averages its maps, so they must be floating point, got {x.dtype}; pass x.float().")
    resolve_k(k, x.shape[-2] * x.shape[-1])
    return pool_top_k(x, k if isinstance(k, int) else 0, k if isinstance(k, float) else 0.0)


class TopKPool(nn.Module):
    """Module form of :func:`top_k_pool`; k is checked at forward time against the map's actual H·W.

    Args:
        k: positions kept per channel — an int in [1, H·W] or a float fraction in (0, 1].

    Example:
        >>> TopKPool(0.25)(torch.arange(16.0).view(1, 1, 4, 4))
        tensor([[13.5000]])
    """

    __jit_unused_properties__: ClassVar[list[str]] = ["k"]  # int or float: TorchScript reads count/fraction

    def __init__(self, k: int | float) -> None:
        super().__init__()
        resolve_k(k, None)
        self.count: int = k if isinstance(k, int) else 0
        self.fraction: float = k if isinstance(k, float) else 0.0

    @property
    def k(self) -> int | float:
        """The setting: positions (int) or a fraction of them (float)."""
        return self.count if self.count > 0 else self.fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Top-k pooled maps (N, C) of ``x`` (N, C, H, W)."""
        if not torch.jit.is_scripting():
            return top_k_pool(x, self.k)
        return pool_top_k(x, self.count, self.fraction)

    def extra_repr(self) -> str:
        """``k=…`` in the module's repr."""
        return f"k={self.k}"

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "count"] = torch.tensor(self.count)
        destination[prefix + "fraction"] = torch.tensor(self.fraction, dtype=torch.float64)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        stored = [state_dict.pop(prefix + key, None) for key in ("count", "fraction")]
        if all(value is not None for value in stored):
            count, fraction = int(stored[0]), float(stored[1])
            k = count if count > 0 else fraction
            if (count, fraction) != (self.count, self.fraction):
                error_msgs.append(f"{prefix or 'TopKPool.'}k: the state dict was saved with Top-GAP k={k!r}, this "
                                  f"model has k={self.k!r}; build the model with k={k!r} (e.g. "
                                  f"timm.create_model(name, k={k!r})) to load it.")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

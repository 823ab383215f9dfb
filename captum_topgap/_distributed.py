"""torch.distributed glue: one process per rank under ``torchrun``; in one process every helper is a no-op.

Training wraps the model in ``DistributedDataParallel`` and shards each global batch with
``DistributedSampler``; evaluation shards the dataset (``shard``) and adds sums and counts over the ranks
(``all_sum``) before dividing, so a sharded result equals the single-process one.

Example:
    >>> rank(), world_size(), shard(range(5)), all_sum([1.0, 2.0])
    (0, 1, [0, 1, 2, 3, 4], [1.0, 2.0])
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist


def setup() -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (gloo on CPU, NCCL on GPU); returns (rank, world size).

    Nothing happens without ``WORLD_SIZE`` > 1 in the environment or when a group already exists.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return rank(), world_size()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """Rank 0: the process that writes checkpoints and shows progress bars."""
    return rank() == 0


def shard(indices: Sequence[int]) -> list[int]:
    """This rank's share of ``indices``: every world-size-th one, starting at the rank."""
    return list(indices)[rank()::world_size()]


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64, so counts stay exact)."""
    if world_size() == 1:
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64,
                          device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return tensor.tolist()

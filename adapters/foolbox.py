"""PGD through Foolbox: ``LinfPGD`` on a ``PyTorchModel`` that carries the normalisation as preprocessing.

Called by :func:`captum_topgap.evaluate.robustness.adversarial_examples` for ``attack="pgd…"``; inputs stay in
``bounds`` and the model sees ``(x − mean) / std``. Step size: α = ``PGD_REL_STEPSIZE`` · eps (2/255 at
eps = 8/255, the usual CIFAR-10 setting), random start in the eps-ball.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
    >>> x = torch.rand(2, 3, 2, 2)
    >>> adv = attack(net, x, torch.tensor([0, 1]), eps=0.1, steps=3, bounds=(0.0, 1.0))
    >>> bool((adv - x).abs().max() <= 0.1 + 1e-6)
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import foolbox
import torch
from torch import nn

PGD_REL_STEPSIZE = 0.25


def attack(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
           bounds: tuple[float, float], preprocessing: Mapping[str, Any] | None = None, seed: int = 0) -> torch.Tensor:
    """Foolbox ``LinfPGD(steps, rel_stepsize=0.25, random_start=True)`` at ``eps``; returns the clipped images."""
    options = None
    if preprocessing:
        options = {key: torch.as_tensor(value, dtype=inputs.dtype, device=inputs.device)
                   for key, value in preprocessing.items() if key in ("mean", "std")} | {"axis": -3}
    fmodel = foolbox.PyTorchModel(model, bounds=(float(bounds[0]), float(bounds[1])), device=inputs.device,
                                  preprocessing=options)
    pgd = foolbox.attacks.LinfPGD(rel_stepsize=PGD_REL_STEPSIZE, steps=steps, random_start=True)
    devices = [inputs.device] if inputs.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        _, clipped, _ = pgd(fmodel, inputs, labels, epsilons=eps)
    return clipped

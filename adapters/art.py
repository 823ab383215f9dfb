"""Square attack through the Adversarial Robustness Toolbox (Foolbox has none): ``SquareAttack``, L∞.

Called by :func:`captum_topgap.evaluate.robustness.adversarial_examples` for ``attack="square…"``. ART's
``PyTorchClassifier`` carries ``clip_values=bounds`` and the normalisation as its preprocessing; ART's
own numpy randomness is seeded for the call and restored afterwards. The initial square share
``p_init`` is ART's 0.8, capped at 0.95·(s − ½)²/(H·W) (s = the shorter side) so that the first square
never fills the whole image, which makes ART fail on images under 5 px.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
    >>> x = torch.rand(2, 3, 2, 2)
    >>> adv = attack(net, x, torch.tensor([0, 1]), eps=0.1, steps=5, bounds=(0.0, 1.0))
    >>> bool((adv - x).abs().max() <= 0.1 + 1e-6)
    True
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from art.attacks.evasion import SquareAttack
from art.estimators.classification import PyTorchClassifier
from torch import nn

SQUARE_P_INIT = 0.8


def attack(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
           bounds: tuple[float, float], preprocessing: Mapping[str, Any] | None = None, seed: int = 0) -> torch.Tensor:
    """ART ``SquareAttack(norm=inf, eps, max_iter=steps)`` on the true labels; returns the adversarial images."""
    channels = inputs.shape[1]
    mean = np.broadcast_to(np.asarray((preprocessing or {}).get("mean", 0.0), np.float32), (channels,))
    std = np.broadcast_to(np.asarray((preprocessing or {}).get("std", 1.0), np.float32), (channels,))
    with torch.no_grad():  # one query, normalised as ART will normalise, tells the number of classes
        first = (inputs[:1] - torch.from_numpy(mean.copy()).to(inputs).view(-1, 1, 1)) / torch.from_numpy(
            std.copy()).to(inputs).view(-1, 1, 1)
        n_classes = model(first).shape[1]
    classifier = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=tuple(inputs.shape[1:]),
                                   nb_classes=n_classes, clip_values=tuple(map(float, bounds)),
                                   preprocessing=(mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)),
                                   device_type="gpu" if inputs.device.type == "cuda" else "cpu")
    height, width = inputs.shape[-2:]
    p_init = min(SQUARE_P_INIT, 0.95 * (min(height, width) - 0.5) ** 2 / (height * width))
    square = SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=steps, p_init=p_init, batch_size=len(inputs),
                          verbose=False)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        adversarial = square.generate(x=inputs.detach().cpu().numpy(), y=labels.cpu().numpy())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return torch.from_numpy(adversarial).to(inputs.device)

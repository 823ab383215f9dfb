"""Square and Auto-PGD through the Adversarial Robustness Toolbox (Foolbox has neither).

Called by :func:`captum_topgap.evaluate.robustness.adversarial_examples` for ``attack="square…"``,
``"apgd_ce…"`` and ``"apgd_dlr…"``. ART's ``PyTorchClassifier`` carries ``clip_values=bounds`` and the
normalisation as its preprocessing; ART's own numpy randomness is seeded for the call and restored
afterwards. ART keeps its iterate in float32; the model sees every query in the images' dtype
(:class:`CastQueries`), so a float64 model runs, and is differentiated, in float64, and the examples come back
in the images' dtype.

- **Square** (Andriushchenko et al. 2020), ``SquareAttack``, L∞, gradient-free: it only queries the model's
  scores, so it is the audit's check that gradients are not what stops the gradient attacks. The initial
  square share ``p_init`` is ART's 0.8, capped at 0.95·(s − ½)²/(H·W) (s = the shorter side) so that the
  first square never fills the whole image, which makes ART fail on images under 5 px. ART's loop queries
  the model three times per iteration — the batch's predictions, the current images' loss, the candidates'
  loss — though only the candidates are new; :class:`RecentQueries` answers the two repeats from memory, so
  an iteration costs one forward of the standing images, the query count of Square's paper.
- **APGD** (Croce & Hein 2020, the gradient attacks of AutoAttack), ``AutoProjectedGradientDescent``, L∞,
  step size adapted from 2ε, one random start, on the cross-entropy (``apgd_ce``) or on the difference of
  logits ratio DLR = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3) (``apgd_dlr``), which does not vanish when the
  softmax saturates and does not change when the logits are rescaled.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
    >>> x = torch.rand(2, 3, 2, 2)
    >>> adv = square(net, x, torch.tensor([0, 1]), eps=0.1, steps=5, bounds=(0.0, 1.0))
    >>> bool((adv - x).abs().max() <= 0.1 + 1e-6)
    True
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
from art.estimators.classification import PyTorchClassifier
from torch import nn

SQUARE_P_INIT = 0.8
APGD_LOSSES = {"apgd_ce": "cross_entropy", "apgd_dlr": "difference_logits_ratio"}


def classifier(model: nn.Module, inputs: torch.Tensor, bounds: tuple[float, float],
               preprocessing: Mapping[str, Any] | None) -> PyTorchClassifier:
    """ART's ``PyTorchClassifier`` of ``model`` on images in ``bounds``, normalised by ``preprocessing``, each
    query cast to the images' dtype (:class:`CastQueries`).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).double()
        >>> classifier(net, torch.rand(1, 3, 2, 2, dtype=torch.float64), (0.0, 1.0), None).nb_classes
        2
    """
    channels = inputs.shape[1]
    mean = np.broadcast_to(np.asarray((preprocessing or {}).get("mean", 0.0), np.float32), (channels,))
    std = np.broadcast_to(np.asarray((preprocessing or {}).get("std", 1.0), np.float32), (channels,))
    with torch.no_grad():  # one query, normalised as ART will normalise, tells the number of classes
        first = (inputs[:1] - torch.from_numpy(mean.copy()).to(inputs).view(-1, 1, 1)) / torch.from_numpy(
            std.copy()).to(inputs).view(-1, 1, 1)
        n_classes = model(first).shape[1]
    return PyTorchClassifier(CastQueries(model, inputs.dtype), loss=nn.CrossEntropyLoss(),
                             input_shape=tuple(inputs.shape[1:]), nb_classes=n_classes,
                             clip_values=tuple(map(float, bounds)),
                             preprocessing=(mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)),
                             device_type="gpu" if inputs.device.type == "cuda" else "cpu")


class CastQueries(nn.Module):
    """``model`` on queries cast to ``dtype``, the dtype of the images attacked: ART hands every query over in
    float32 (``art.config.ART_NUMPY_DTYPE``, read by its attacks at import), so without the cast a float64 model
    and :class:`~captum_topgap.evaluate.robustness.RegionModel`'s float64 clean images meet float32 tensors.
    The cast is differentiable: ART's loss gradients flow back through it to its float32 iterate.

    Example:
        >>> net = torch.nn.Linear(3, 2).double()
        >>> CastQueries(net, torch.float64)(torch.rand(4, 3)).dtype
        torch.float64
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output for ``x`` in ``dtype``."""
        return self.model(x.to(self.dtype))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Numpy's and Python's global generators (which ART draws from) inside; restore them after."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def _run(make: Callable[[PyTorchClassifier], Any], model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
         bounds: tuple[float, float], preprocessing: Mapping[str, Any] | None, seed: int) -> torch.Tensor:
    with getattr(model, "unchecked", nullcontext)():  # APGD's constructor probes the model with an image of ones
        attack = make(classifier(model, inputs, bounds, preprocessing))
    with seeded(seed):
        adversarial = attack.generate(x=inputs.detach().cpu().numpy(), y=labels.cpu().numpy())
    return torch.from_numpy(adversarial).to(inputs)


class RecentQueries(nn.Module):
    """``model``, answering each image it saw in its last ``calls`` forwards from memory (per image: the
    bytes of its row are the key), so an attack that re-queries images it already queried pays only for new
    ones. For a model in eval mode the answers are the model's own, to float rounding (another batch
    composition may round differently). No gradients flow through it.

    Example:
        >>> net = torch.nn.Linear(3, 2)
        >>> cached, x = RecentQueries(net), torch.rand(4, 3)
        >>> torch.allclose(cached(x), net(x)) and torch.allclose(cached(x[[2, 0]]), net(x[[2, 0]]))
        True
        >>> cached.forwards, cached.rows
        (1, 4)
    """

    def __init__(self, model: nn.Module, calls: int = 3) -> None:
        super().__init__()
        self.model, self.calls = model, calls
        self.recent: list[dict[bytes, torch.Tensor]] = []
        self.forwards = self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output for ``x``, computed only for the images it has not just answered."""
        keys = [row.detach().cpu().numpy().tobytes() for row in x]
        known = {key: out for memory in self.recent for key, out in memory.items()}
        missing = [i for i, key in enumerate(keys) if key not in known]
        with torch.no_grad():
            if missing:
                computed = self.model(x[missing])
                known.update(zip((keys[i] for i in missing), computed, strict=True))
                self.forwards, self.rows = self.forwards + 1, self.rows + len(missing)
            output = torch.stack([known[key] for key in keys])
        self.recent = [*self.recent, dict(zip(keys, output, strict=True))][-self.calls:]
        return output


def square(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
           bounds: tuple[float, float], preprocessing: Mapping[str, Any] | None = None, seed: int = 0) -> torch.Tensor:
    """ART ``SquareAttack(norm=inf, eps, max_iter=steps)`` on the true labels; returns the adversarial images."""
    height, width = inputs.shape[-2:]
    p_init = min(SQUARE_P_INIT, 0.95 * (min(height, width) - 0.5) ** 2 / (height * width))
    return _run(lambda clf: SquareAttack(clf, norm=np.inf, eps=eps, max_iter=steps, p_init=p_init,
                                         batch_size=len(inputs), verbose=False),
                RecentQueries(model), inputs, labels, bounds, preprocessing, seed)


def apgd(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
         bounds: tuple[float, float], preprocessing: Mapping[str, Any] | None = None, seed: int = 0,
         loss: str = "apgd_ce") -> torch.Tensor:
    """ART ``AutoProjectedGradientDescent(norm=inf, eps, eps_step=2·eps, max_iter=steps)`` on ``loss``
    (``"apgd_ce"`` or ``"apgd_dlr"``), one random start; returns the adversarial images.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
        >>> x = torch.rand(2, 3, 2, 2)
        >>> adv = apgd(net, x, torch.tensor([0, 1]), eps=0.1, steps=5, bounds=(0.0, 1.0), loss="apgd_dlr")
        >>> bool((adv - x).abs().max() <= 0.1 + 1e-6)
        True
    """
    return _run(lambda clf: AutoProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=steps,
                                                         nb_random_init=1, loss_type=APGD_LOSSES[loss],
                                                         batch_size=len(inputs), verbose=False),
                model, inputs, labels, bounds, preprocessing, seed)

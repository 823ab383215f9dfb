"""What the two decoders of this package share: the 3 × 3 conv-BN-ReLU block and a frozen classifier inside.

Expansion CAM's expansion network (``models/expansion.py``) and Perception Visualization's decoder
(``models/perception.py``) both train a network over a classifier that must not move: its parameters stop
requiring gradients and it stays in eval mode — BatchNorm statistics included — while the decoder trains.

Example:
    >>> import torch
    >>> block = conv_bn_relu(4, 8)
    >>> tuple(block(torch.rand(1, 4, 5, 5)).shape)
    (1, 8, 5, 5)
"""

from __future__ import annotations

from torch import nn


def conv_bn_relu(channels: int, out: int) -> nn.Sequential:
    """3 × 3 convolution (no bias), BatchNorm, ReLU: y = ReLU(BN(W ⋆ x)).

    Example:
        >>> conv_bn_relu(2, 3)[0].kernel_size
        (3, 3)
    """
    return nn.Sequential(nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                         nn.ReLU(inplace=True))


class OverFrozen(nn.Module):
    """Base of a trainable network over a frozen classifier held in the attribute named by ``frozen``.

    ``train(mode)`` trains this network and leaves the classifier in eval mode.

    Example:
        >>> class Head(OverFrozen):
        ...     frozen = "classifier"
        ...     def __init__(self, classifier):
        ...         super().__init__()
        ...         self.classifier = freeze(classifier)
        >>> head = Head(nn.BatchNorm1d(2)).train()
        >>> head.training, head.classifier.training
        (True, False)
    """

    frozen = "classifier"

    def train(self, mode: bool = True) -> OverFrozen:
        """Train mode for this network; the frozen classifier stays in eval mode."""
        super().train(mode)
        getattr(self, self.frozen).eval()
        return self


def freeze(classifier: nn.Module) -> nn.Module:
    """The classifier in eval mode with ``requires_grad=False`` on every parameter (returned for chaining).

    Example:
        >>> any(p.requires_grad for p in freeze(nn.Linear(2, 2)).parameters())
        False
    """
    return classifier.eval().requires_grad_(False)

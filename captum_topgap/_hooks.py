"""One way to look inside a forward pass: the outputs of chosen layers, their gradients, or a replacement.

Every method, ReFF, the collapse diagnostic and the visualisations use :func:`capture` (or
:func:`forward_hooks` for a callback on many modules); the hooks live exactly as long as the ``with``
block, also when it raises.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU(), torch.nn.Flatten())
    >>> with capture([net[1]]) as seen:
    ...     score = net(torch.rand(1, 3, 4, 4)).sum()
    >>> tuple(seen.outputs[0].shape), tuple(seen.gradients(score)[0].shape)
    ((1, 2, 2, 2), (1, 2, 2, 2))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

Hook = Callable[[nn.Module, object, object], object]


@contextmanager
def forward_hooks(modules: Iterable[nn.Module], hook: Hook) -> Iterator[None]:
    """Register ``hook(module, inputs, output)`` as a forward hook on every module for the block.

    A hook that returns a value replaces the module's output (PyTorch's rule).

    Example:
        >>> calls = []
        >>> net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Identity())
        >>> with forward_hooks(net, lambda module, _i, _o: calls.append(type(module).__name__)):
        ...     _ = net(torch.zeros(1))
        >>> calls, len(net[0]._forward_hooks)
        (['Identity', 'Identity'], 0)
    """
    handles = [module.register_forward_hook(hook) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class Captured:
    """The last output of each captured layer during a :func:`capture` block, and their gradients."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        self.layers = list(layers)
        self.outputs: list[torch.Tensor | None] = [None] * len(self.layers)

    def ready(self) -> list[torch.Tensor]:
        """The outputs, or a clear error naming the layers that did not run in the forward pass."""
        missing = [i for i, out in enumerate(self.outputs) if not isinstance(out, torch.Tensor)]
        if missing:
            raise ValueError(f"`layer` {[type(self.layers[i]).__name__ for i in missing]} produced no tensor in the "
                             "forward pass; pick a module the model calls on its input.")
        return [out for out in self.outputs if out is not None]

    def gradients(self, score: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, ...]:
        """∂ score / ∂ output of every captured layer (``create_graph`` keeps them differentiable)."""
        return torch.autograd.grad(score, self.ready(), create_graph=create_graph)


@contextmanager
def capture(layers: Sequence[nn.Module],
            replace: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> Iterator[Captured]:
    """Record the output of each layer during forwards inside the block (the last call wins).

    ``replace(index, output)`` may return a new output for layer ``index`` (Recipro-CAM feeds masked copies
    of a layer's output to the rest of the network this way); the captured output is the original.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Flatten())
        >>> with capture([net[0]], replace=lambda _i, out: 2 * out) as seen:
        ...     doubled = net(torch.ones(1, 1, 1, 1))
        >>> doubled.tolist(), seen.outputs[0].flatten().tolist()
        ([[2.0]], [1.0])
    """
    seen = Captured(layers)
    index = {id(layer): i for i, layer in enumerate(seen.layers)}

    def hook(module: nn.Module, _inputs: object, output: object) -> object:
        i = index[id(module)]
        seen.outputs[i] = output if isinstance(output, torch.Tensor) else None
        return replace(i, output) if replace is not None and isinstance(output, torch.Tensor) else None

    with forward_hooks(seen.layers, hook):
        yield seen

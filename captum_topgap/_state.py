"""The model-state contract, implemented once and used by every method (docs/architecture.md).

An attribution must leave the model exactly as it came: every submodule's ``training`` flag, every
parameter's ``requires_grad`` flag and ``.grad``, no hook left behind, and every submodule where it was (a
library that swaps a layer for its own during the call — pytorch-grad-cam's ``AblationLayer`` — and raises
before swapping it back leaves no trace) — also when the call raises.
Parameters and buffers cannot change because methods run the model in eval mode (BatchNorm does not
update its running statistics, Dropout is off) and never step an optimiser.

Example:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    >>> with preserved_state(model):
    ...     _ = model(torch.rand(1, 3, 8, 8))
    ...     model.training
    False
    >>> model.training
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _hook_keys(modules: list[nn.Module]) -> dict[tuple[int, str], set[int]]:
    """The keys of every non-empty hook dictionary (most modules have none: this runs on every call)."""
    return {(id(module), name): set(hooks) for module in modules for name in _HOOK_DICTS
            if (hooks := module.__dict__.get(name))}


def _remove_new_hooks(modules: list[nn.Module], before: dict[tuple[int, str], set[int]]) -> None:
    for module in modules:
        for name in _HOOK_DICTS:
            hooks = module.__dict__.get(name)
            if not hooks:
                continue
            for key in set(hooks) - before.get((id(module), name), set()):
                del hooks[key]
                for extra in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                              "_forward_pre_hooks_with_kwargs"):
                    getattr(module, extra, {}).pop(key, None)


def count_hooks(model: nn.Module) -> int:
    """Number of module hooks (forward, forward-pre, backward, backward-pre) registered on ``model``.

    Example:
        >>> import torch
        >>> count_hooks(torch.nn.Linear(2, 2))
        0
    """
    return sum(len(getattr(module, name)) for module in model.modules() for name in _HOOK_DICTS)


@contextmanager
def preserved_state(model: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Run a block with ``model`` in eval mode and restore its exact state afterwards.

    Restores each submodule's ``training`` flag, each parameter's ``requires_grad`` and ``.grad``, puts back
    every child module replaced inside the block, and removes every module hook added inside the block,
    whether the block returns or raises.

    Args:
        model: the network being explained.
        eval_mode: put the whole model in eval mode inside the block (the default; explanations of a
            model in train mode would otherwise update BatchNorm statistics and sample Dropout).

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 2)
        >>> with preserved_state(net):
        ...     net(torch.ones(1, 2)).sum().backward()
        >>> net.weight.grad is None
        True
    """
    modules = list(model.modules())
    modes = [module.training for module in modules]
    params = [p for module in modules for p in module._parameters.values() if p is not None]  # shared ones twice
    requires_grad = [p.requires_grad for p in params]
    grads = [p.grad for p in params]  # set aside, not copied: the block accumulates into fresh tensors
    hooks = _hook_keys(modules)
    children = [(module, dict(module._modules)) for module in modules if module._modules]
    for p, grad in zip(params, grads, strict=True):
        if grad is not None:
            p.grad = None
    if eval_mode and any(modes):
        model.eval()
    try:
        yield model
    finally:
        for module, items in children:
            if module._modules != items:  # a child swapped (modules compare by identity) and left
                module._modules.clear()
                module._modules.update(items)
        _remove_new_hooks(modules, hooks)
        for module, mode in zip(modules, modes, strict=True):
            if module.training != mode:
                module.training = mode
        for p, flag, grad in zip(params, requires_grad, grads, strict=True):
            if p.requires_grad != flag:
                p.requires_grad_(flag)
            if p.grad is not grad:
                p.grad = grad

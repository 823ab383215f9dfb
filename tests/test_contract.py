"""The model-state contract over every registered method — the test iterates the registry."""

from __future__ import annotations

import gc
import warnings

import pytest
import torch

import captum_topgap
from captum_topgap._state import count_hooks
from captum_topgap.models import ExpansionNet, PerceptionDecoder

from .conftest import FAST, TinyNet, set_fail, tiny_abn, tiny_topgap


def snapshot(model: torch.nn.Module) -> dict:
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "training": [(name, m.training) for name, m in model.named_modules()],
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "grads": [p.grad for p in model.parameters()],
    }


def assert_same_state(model: torch.nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["tensors"].keys() == before["tensors"].keys()
    for key, value in before["tensors"].items():
        assert torch.equal(after["tensors"][key], value), f"{key} changed"
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(g is None for g in after["grads"]), "gradients left on the parameters"
    assert count_hooks(model) == 0


def model_for(name: str, tiny_net: TinyNet) -> torch.nn.Module:
    """The tiny classifier, a tiny Top-GAP network or ABN, or an expansion network or a perception decoder over the tiny
    classifier (in train mode: the method must not change that) for methods that read a model's own maps.
    """
    if captum_topgap.method_spec(name).name == "expansion_cam":
        return ExpansionNet(tiny_net, stages=["features.2", "features"]).train()
    if captum_topgap.method_spec(name).name == "perception_visualization":
        return PerceptionDecoder(tiny_net, image_size=8).train()
    if captum_topgap.method_spec(name).name == "abn_attention":
        return tiny_abn()
    return tiny_topgap() if captum_topgap.method_spec(name).kind == "model" else tiny_net


@pytest.mark.parametrize("name", captum_topgap.list_methods())
def test_every_method_keeps_the_model_state(name: str, tiny_net, images) -> None:
    model = model_for(name, tiny_net)
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.weight.requires_grad_(False)
    before = snapshot(model)
    method = captum_topgap.get_method(name, model)
    out = method.attribute(images, target=[0, 2], **FAST.get(name, {}))
    assert isinstance(out, torch.Tensor) and out.shape[0] == 2 and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert_same_state(model, before)

    set_fail(model, True)
    with pytest.raises(RuntimeError, match="on purpose"):
        method.attribute(images, target=1, **FAST.get(name, {}))
    set_fail(model, False)
    assert_same_state(model, before)


@pytest.mark.parametrize("name", captum_topgap.list_methods())
def test_a_failure_mid_call_leaves_every_module_where_it_was(name: str, tiny_net, images) -> None:
    """The model fails in the last forward of a call — when pytorch-grad-cam's AblationCAM has swapped a layer
    for its AblationLayer — and the model still has its own modules, state and a working forward.
    """
    model = model_for(name, tiny_net)
    method = captum_topgap.get_method(name, model)
    method.attribute(images, target=[0, 2], **FAST.get(name, {}))  # traced and bound: later calls are alike
    before, modules = snapshot(model), [(n, id(m)) for n, m in model.named_modules()]
    last = list(model.modules())[-1]
    calls, fail_at = [], [0]

    def fail_at_the_last_forward(*_: object) -> None:
        calls.append(1)
        if len(calls) == fail_at[0]:
            raise RuntimeError("the model failed in the call's last forward, on purpose")

    handle = last.register_forward_hook(fail_at_the_last_forward)
    try:
        method.attribute(images, target=[0, 2], **FAST.get(name, {}))
        fail_at[0], calls[:] = len(calls), []
        with pytest.raises(RuntimeError, match="on purpose"):
            method.attribute(images, target=[0, 2], **FAST.get(name, {}))
    finally:
        handle.remove()
    assert [(n, id(m)) for n, m in model.named_modules()] == modules
    assert_same_state(model, before)
    model(images)


def live_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


@pytest.mark.parametrize("name", captum_topgap.list_methods())
def test_many_calls_do_not_grow_memory(name: str, tiny_net, images) -> None:
    model = model_for(name, tiny_net)
    method = captum_topgap.get_method(name, model)
    with warnings.catch_warnings():  # pytest records every warning: that list would grow, not the method
        warnings.simplefilter("ignore")
        for _ in range(5):
            method.attribute(images, target=1, **FAST.get(name, {}))
        start = live_objects()
        for _ in range(200):
            method.attribute(images, target=1, **FAST.get(name, {}))
        grown = live_objects() - start
    assert grown < 100, f"{grown} objects accumulate across 200 calls"
    assert count_hooks(model) == 0

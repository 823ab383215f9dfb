"""Every registered method under the conditions users create: float64/float16/bfloat16 models and inputs,
inputs that require gradients, two threads on one model, degenerate maps, models that trace badly.
"""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
from torch import nn

import captum_topgap

from .conftest import FAST, TinyNet
from .test_contract import model_for

DTYPES = [torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", captum_topgap.list_methods())
def test_every_dtype_works_or_is_refused_clearly(name: str, dtype: torch.dtype, tiny_net) -> None:
    """Either maps in the inputs' dtype, finite, or an error that names the dtype and what to pass instead."""
    model = model_for(name, tiny_net).eval().to(dtype)
    inputs = torch.rand(2, 3, *getattr(model, "image_size", (16, 16))).to(dtype)  # a PV decoder's own size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = captum_topgap.get_method(name, model).attribute(inputs, target=[0, 1], **FAST.get(name, {}))
        except (TypeError, ValueError, FloatingPointError) as error:
            assert str(dtype).split(".")[1] in str(error) and "float32" in str(error), str(error)
            return
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_float64_model_traces_at_its_dtype_and_the_inputs_size() -> None:
    """Layer tracing uses the first input (its size and dtype), so a float64 model ending in a Linear on
    flattened 8 × 8 features works without ``input_size``.
    """
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2)).double()
    method = captum_topgap.get_method("gradcam", net)
    assert method.attribute(torch.rand(2, 3, 8, 8, dtype=torch.float64), target=1).dtype == torch.float64
    assert method.layer_name == "1"


@pytest.mark.parametrize("name", captum_topgap.list_methods())
def test_the_callers_tensor_is_untouched(name: str, tiny_net, images) -> None:
    model = model_for(name, tiny_net)
    inputs = images.clone().requires_grad_(True)
    before = inputs.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captum_topgap.get_method(name, model).attribute(inputs, target=1, **FAST.get(name, {}))
    assert inputs.grad is None and inputs.requires_grad and torch.equal(inputs.detach(), before)


@pytest.mark.parametrize("names", [("gradcam", "recipro_cam"), ("differentiable_gradcam", "integrated_gradients")])
def test_two_threads_on_one_model_give_the_sequential_maps(names: tuple[str, str]) -> None:
    """The model's lock serialises the calls: each thread's maps equal a call alone, and a model in train
    mode keeps its BatchNorm statistics and its mode.
    """
    torch.manual_seed(0)
    model = TinyNet().train()
    inputs = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    methods = [captum_topgap.get_method(name, model) for name in names]
    alone = [m.attribute(inputs, target=[0, 1, 2, 0], **FAST.get(n, {})) for m, n in zip(methods, names, strict=True)]
    statistics = {k: v.clone() for k, v in model.state_dict().items()}
    results: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    start = threading.Barrier(2)

    def work(index: int) -> None:
        start.wait()
        for _ in range(5):
            results[index].append(methods[index].attribute(inputs, target=[0, 1, 2, 0],
                                                            **FAST.get(names[index], {})))

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in (0, 1):
        assert len(results[index]) == 5 and all(torch.allclose(r, alone[index]) for r in results[index])
    assert model.training and all(torch.equal(v, statistics[k]) for k, v in model.state_dict().items())


def test_a_map_that_is_zero_everywhere_warns(images) -> None:
    net = TinyNet().eval()
    with torch.no_grad():
        net.fc.weight.zero_()  # no evidence for any class at any position
    for name in ("gradcam", "differentiable_gradcam", "layer_gradcam"):
        with pytest.warns(UserWarning, match=rf"'{name}' gave a map that is zero everywhere for some images"):
            captum_topgap.get_method(name, net).attribute(images, target=0)


def test_a_one_by_one_layer_warns_once_per_method(tiny_net, images) -> None:
    method = captum_topgap.get_method("gradcam", tiny_net, layer=tiny_net.pool)
    with pytest.warns(UserWarning, match=r"has a 1 × 1 output for \(8, 8\) inputs: every map will be constant"):
        method.attribute(images, target=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        method.attribute(images, target=0)

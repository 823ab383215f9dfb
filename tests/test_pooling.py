"""TopKPool: properties that only a correct top-k mean has."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from captum_topgap import TopKPool, top_k_pool

shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))


@st.composite
def maps(draw) -> torch.Tensor:
    shape = draw(shapes)
    values = draw(arrays("float32", shape, elements=st.floats(-100, 100, width=32)))
    return torch.from_numpy(values)


@settings(max_examples=60, deadline=None)
@given(maps())
def test_k_equal_to_all_positions_is_global_average_pooling(x: torch.Tensor) -> None:
    assert torch.equal(top_k_pool(x, x.shape[-2] * x.shape[-1]), F.adaptive_avg_pool2d(x, 1).flatten(1))
    assert torch.equal(TopKPool(1.0)(x), F.adaptive_avg_pool2d(x, 1).flatten(1))


@settings(max_examples=60, deadline=None)
@given(maps())
def test_k_one_is_global_max_pooling(x: torch.Tensor) -> None:
    assert torch.equal(top_k_pool(x, 1), F.adaptive_max_pool2d(x, 1).flatten(1))


@settings(max_examples=60, deadline=None)
@given(maps(), st.data())
def test_invariant_to_permuting_positions(x: torch.Tensor, data) -> None:
    n, c, h, w = x.shape
    k = data.draw(st.integers(1, h * w))
    perm = torch.tensor(data.draw(st.permutations(list(range(h * w)))))
    shuffled = x.flatten(2)[..., perm].view(n, c, h, w)
    assert torch.allclose(top_k_pool(shuffled, k), top_k_pool(x, k), rtol=1e-6, atol=1e-5)
    expected = x.flatten(2).sort(dim=-1, descending=True).values[..., :k].double().mean(-1)
    assert torch.allclose(top_k_pool(x, k).double(), expected, rtol=1e-5, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(2, 5), st.integers(2, 5), st.data())
def test_gradient_is_one_over_k_on_exactly_the_selected_positions(c: int, h: int, w: int, data) -> None:
    k = data.draw(st.integers(1, h * w))
    order = torch.tensor(data.draw(st.permutations(list(range(c * h * w)))), dtype=torch.float32)
    x = order.view(1, c, h, w).requires_grad_(True)  # distinct values: the top-k set is unique
    top_k_pool(x, k).sum().backward()
    threshold = x.detach().flatten(2).sort(dim=-1, descending=True).values[..., k - 1:k].view(1, c, 1, 1)
    selected = x.detach() >= threshold
    assert torch.equal(x.grad[selected], torch.full_like(x.grad[selected], 1.0 / k))
    assert torch.equal(x.grad[~selected], torch.zeros_like(x.grad[~selected]))
    assert int(selected.sum()) == c * k


def test_fraction_counts_positions() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert top_k_pool(x, 0.25).item() == pytest.approx((15 + 14 + 13 + 12) / 4)
    assert top_k_pool(x, 0.01).item() == 15.0  # at least one position


@pytest.mark.parametrize("k, message", [
    (0, r"`k` must be at least 1 position, got 0"),
    (-3, r"`k` must be at least 1 position"),
    (0.0, r"`k` as a fraction must be in \(0, 1\]"),
    (1.5, r"`k` as a fraction must be in \(0, 1\]"),
])
def test_bad_k_is_rejected_at_construction(k, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TopKPool(k)


def test_k_larger_than_the_map_is_rejected_at_forward_time() -> None:
    pool = TopKPool(17)
    assert pool(torch.zeros(1, 2, 5, 5)).shape == (1, 2)
    with pytest.raises(ValueError, match=r"`k` = 17 exceeds the 16 positions of the map \(H·W\)"):
        pool(torch.zeros(1, 2, 4, 4))
    scripted = torch.jit.script(pool)  # TorchScript's path refuses too, instead of average pooling
    assert torch.equal(scripted(torch.ones(1, 2, 5, 5)), pool(torch.ones(1, 2, 5, 5)))
    with pytest.raises(Exception, match=r"k \(a count of positions\) is larger than the map's H·W positions"):
        scripted(torch.zeros(1, 2, 4, 4))


def test_k_of_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"`k` must be an int"):
        TopKPool("64")
    with pytest.raises(TypeError, match=r"`k` must be an int"):
        TopKPool(True)


def test_k_is_part_of_the_state_and_another_k_refuses_to_load() -> None:
    import timm

    import captum_topgap  # noqa: F401  (registers the Top-GAP names)

    trained = timm.create_model("topgap_resnet18", num_classes=3, k=16)
    state = trained.state_dict()
    assert int(state["pool.count"]) == 16 and float(state["pool.fraction"]) == 0.0
    with pytest.raises(RuntimeError, match=r"pool\.k: the state dict was saved with Top-GAP k=16, this model has "
                                           r"k=64; build the model with k=16"):
        timm.create_model("topgap_resnet18", num_classes=3).load_state_dict(state)
    with pytest.raises(RuntimeError, match=r"saved with Top-GAP k=0\.25, this model has k=16"):
        trained.load_state_dict(timm.create_model("topgap_resnet18", num_classes=3, k=0.25).state_dict())
    same = timm.create_model("topgap_resnet18", num_classes=3, k=16)
    same.load_state_dict(state)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(same.eval()(x), trained.eval()(x))
    older = {key: value for key, value in state.items() if not key.startswith("pool.")}  # saved before k was stored
    assert not timm.create_model("topgap_resnet18", num_classes=3, k=16).load_state_dict(older).missing_keys

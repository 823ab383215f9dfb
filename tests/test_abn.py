"""The Attention Branch Network (Fukui et al., CVPR 2019) and the ReFF supplementary's ABN-based regularisation."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from torch import nn

import captum_topgap
from captum_topgap.adapters.grad_cam import ABNAttention
from captum_topgap.data import collate
from captum_topgap.data.transforms import Batch
from captum_topgap.models import ABNResNet
from captum_topgap.train.checkpoints import load_model, save_checkpoint
from captum_topgap.train.objectives import ABNObjective, attention_map_loss, make_objective
from captum_topgap.train.workflows import explanation_setup, training_method


def fixed_attention(model: ABNResNet, value: float) -> ABNResNet:
    """M(x) ≡ σ(±100) ∈ {0, 1}: the last BatchNorm's scale 0 and its shift ±100 (eval mode)."""
    with torch.no_grad():
        model.bn_att3.weight.zero_()
        model.bn_att3.bias.fill_(100.0 if value else -100.0)
    return model.eval()


@pytest.fixture
def abn() -> ABNResNet:
    torch.manual_seed(0)
    return timm.create_model("abn_resnet18", num_classes=3)


def test_attention_zero_gives_the_perception_branch_on_g_and_one_doubles_g(abn) -> None:
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        g = abn.eval().forward_features(x)
        on_g = abn.fc(abn.global_pool(abn.layer4(g)))
        on_2g = abn.fc(abn.global_pool(abn.layer4(2 * g)))
        zero = fixed_attention(abn, 0.0)(x, return_attention=True)
        assert torch.equal(zero.attention, torch.zeros_like(zero.attention))
        torch.testing.assert_close(zero.logits, on_g)
        one = fixed_attention(abn, 1.0)(x, return_attention=True)
        assert torch.equal(one.attention, torch.ones_like(one.attention))
        torch.testing.assert_close(one.logits, on_2g)
    assert not torch.allclose(on_g, on_2g)  # the two cases are told apart


def test_attention_map_is_in_unit_range_at_layer3_size_and_forward_gives_the_perception_logits(abn) -> None:
    x = torch.rand(2, 3, 64, 64)
    abn.eval()
    with torch.no_grad():
        out = abn(x, return_attention=True)
        layer3 = abn.forward_features(x)
    assert out.attention.shape == (2, 1, *layer3.shape[-2:]) == (2, 1, 4, 4)
    assert float(out.attention.min()) >= 0 and float(out.attention.max()) <= 1
    assert torch.equal(abn(x), out.logits) and out.attention_logits.shape == (2, 3)


def test_the_attention_branch_is_a_stride_one_copy_of_layer4_not_layer4_itself(abn) -> None:
    assert abn.att_layer4[0].conv1.stride == (1, 1) and abn.layer4[0].conv1.stride == (2, 2)
    assert abn.att_layer4[0].downsample[0].stride == (1, 1)
    assert not torch.equal(abn.att_layer4[0].conv1.weight, abn.layer4[0].conv1.weight)


def test_the_timm_contract_create_by_name_reset_classifier_and_load_model(tmp_path, abn) -> None:
    assert isinstance(abn, ABNResNet) and abn.get_classifier() is abn.fc
    abn.reset_classifier(5)
    out = abn.eval()(torch.rand(1, 3, 48, 48), return_attention=True)
    assert out.logits.shape == out.attention_logits.shape == (1, 5)
    assert timm.create_model("abn_resnet50", num_classes=2)(torch.rand(1, 3, 64, 64)).shape == (1, 2)
    with pytest.raises(ValueError, match="pretrained=True is not available"):
        timm.create_model("abn_resnet18", pretrained=True)
    path = tmp_path / "abn.pt"
    save_checkpoint(path, model=abn.state_dict(), metadata={"model": "abn_resnet18", "model_kwargs": {"num_classes": 5},
                                                            "method": "abn"})
    loaded = load_model(path)
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), abn(x))


def test_the_mask_term_is_zero_for_a_mask_equal_to_m_and_the_summed_square_error_otherwise() -> None:
    attention = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    mask = attention.repeat_interleave(3, dim=2).repeat_interleave(3, dim=3)  # 6 × 6, area-averages back to M
    assert attention_map_loss(attention, mask).item() == 0.0
    assert attention_map_loss(attention, torch.ones(1, 1, 6, 6)).item() == pytest.approx(2.0)  # two positions off by 1
    assert attention_map_loss(attention, torch.full((1, 1, 6, 6), 0.5)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"`masks` must be \(N, 1, H, W\)"):
        attention_map_loss(attention, torch.ones(2, 1, 6, 6))


def test_the_objective_adds_gamma_times_the_map_term_only_for_samples_with_a_mask(abn) -> None:
    images = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    batch = collate([(images[0], 1, torch.ones(1, 48, 48)), (images[1], 0, None)])
    abn.eval()
    loss, logits = ABNObjective(weight=10.0)(abn, batch)
    out = abn(batch.images, return_attention=True)
    ce = F.cross_entropy(out.attention_logits, batch.labels) + F.cross_entropy(out.logits, batch.labels)
    map_term = (out.attention[0] - 1).pow(2).sum() / 2  # (1/|B|) Σ over the one annotated sample
    torch.testing.assert_close(loss, ce + 10.0 * map_term)
    assert torch.equal(logits, out.logits)
    plain, _ = ABNObjective(weight=0.0)(abn, batch)
    torch.testing.assert_close(plain, ce)


def test_training_with_the_map_term_moves_m_towards_the_masks() -> None:
    torch.manual_seed(0)
    model = timm.create_model("abn_resnet18", num_classes=2)
    mask = torch.zeros(1, 48, 48)
    mask[:, :24] = 1.0  # the top half
    data = [(torch.rand(3, 48, 48), i % 2, mask) for i in range(8)]
    batch = collate(data)
    objective = make_objective("abn", model, weight=10.0)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)

    def error() -> float:
        model.eval()
        with torch.no_grad():
            return attention_map_loss(model.attention_map(batch.images), batch.masks).item()

    before = error()
    for _ in range(15):
        model.train()
        optimiser.zero_grad()
        objective(model, batch)[0].backward()
        optimiser.step()
    assert error() < 0.5 * before


def test_bad_inputs_get_clear_errors(abn) -> None:
    with pytest.raises(TypeError, match=r"ABNObjective needs an Attention Branch Network"):
        ABNObjective()(nn.Sequential(nn.Flatten(), nn.LazyLinear(2)), collate([(torch.rand(3, 4, 4), 0, None)]))
    with pytest.raises(ValueError, match=r"`mask` of sample 0 has size \(24, 24\) but its image is \(48, 48\)"):
        collate([(torch.rand(3, 48, 48), 0, torch.ones(1, 24, 24))])
    small_mask = Batch(torch.rand(1, 3, 48, 48), torch.tensor([0]), torch.ones(1, 1, 24, 24), torch.tensor([True]))
    with pytest.raises(ValueError, match=r"`masks` are \(24, 24\) for \(48, 48\) images"):
        ABNObjective()(abn, small_mask)
    with pytest.raises(ValueError, match=r"'abn' regularises its one attention map"):
        make_objective("abn", abn, variant="l2")
    with pytest.raises(ValueError, match=r"pair --method abn with --model abn_resnet18"):
        training_method("abn", timm.create_model("resnet18", num_classes=2))
    with pytest.raises(ValueError, match=r"method 'abn' trains an abn_\* model"):
        training_method("baseline", abn)
    assert training_method("auto", abn) == "abn"
    data = [(torch.rand(3, 8, 8), 0, torch.ones(1, 8, 8))] * 4
    with pytest.raises(ValueError, match=r"`n_annotated`=0 leaves the pseudo-annotator no image"):
        explanation_setup(data, 0, 8)
    with pytest.raises(ValueError, match=r"`n_annotated` must be .*4"):
        explanation_setup(data, 5, 8)
    with pytest.raises(TypeError, match=r"'abn_attention' needs an Attention Branch Network"):
        captum_topgap.get_method("abn_attention", timm.create_model("resnet18", num_classes=2)).attribute(
            torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"`layer` is not used by 'abn_attention'"):
        captum_topgap.get_method("abn_attention", abn, layer="layer3")


def test_registry_map_is_m_upsampled_and_the_grad_cam_bridge_matches_it_for_every_target(abn) -> None:
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(4))
    abn.eval()
    with torch.no_grad():
        attention = abn.attention_map(x)
    method = captum_topgap.get_method("abn_attention", abn)
    maps = method.attribute(x, target=[0, 2])
    expected = F.interpolate(attention, size=(48, 48), mode="bilinear", align_corners=False)
    torch.testing.assert_close(maps, expected)
    assert torch.equal(method.attribute(x, target=1), maps)  # class-agnostic
    raw = captum_topgap.get_method("abn_attention", abn, upsample=False).attribute(x)
    assert torch.equal(raw, attention)
    with pytest.raises(ValueError, match=r"target"):
        method.attribute(x, target=7)
    with ABNAttention(abn, [abn.bn_att3]) as cam:
        by_default = cam(input_tensor=x, targets=None)
        logit = cam(input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
        softmax = cam(input_tensor=x, targets=[ClassifierOutputSoftmaxTarget(0)] * 2)
    assert np.array_equal(by_default, logit) and np.array_equal(by_default, softmax)
    flat = maps[:, 0].flatten(1)
    scaled = ((flat - flat.min(1, keepdim=True).values) / (flat.max(1, keepdim=True).values
                                                          - flat.min(1, keepdim=True).values)).view(2, 48, 48)
    np.testing.assert_allclose(by_default, scaled.numpy(), atol=2e-2)  # grad-cam's min-max after its own resize

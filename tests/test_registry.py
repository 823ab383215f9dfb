"""Names, aliases, suggestions, default layers and third-party registration."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
import torch
from captum.attr import Attribution, Saliency

import captum_topgap
from captum_topgap import registry
from captum_topgap.app.cli import main


@pytest.fixture
def clean_registry(monkeypatch):
    """Let a test add names without leaking them into the other tests."""
    captum_topgap.list_methods()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_KEYS", dict(registry._KEYS))
    monkeypatch.setattr(registry, "_COMPOSITIONS", dict(registry._COMPOSITIONS))


def test_at_least_25_methods_from_three_origins() -> None:
    names = captum_topgap.list_methods()
    assert names == sorted(names) and len(names) >= 25
    origins = {captum_topgap.method_spec(n).origin for n in names}
    assert origins == {"captum", "grad-cam", "captum-topgap"}


@pytest.mark.parametrize("alias, canonical", [
    ("grad-cam", "gradcam"), ("GradCAM", "gradcam"), ("Grad CAM", "gradcam"),
    ("gradcam_plus_plus", "gradcam++"), ("GradCAM++", "gradcam++"), ("IG", "integrated_gradients"),
    ("LayerGradCam", "layer_gradcam"), ("KPCA-CAM", "kpca_cam"),
])
def test_aliases_are_case_and_separator_insensitive(alias: str, canonical: str) -> None:
    assert captum_topgap.method_spec(alias).name == canonical


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'gradcm'.*closest names: \[.*'gradcam'"):
        captum_topgap.get_method("gradcm", torch.nn.Conv2d(3, 3, 1))


def test_every_method_is_a_captum_attribution(tiny_net) -> None:
    from captum_topgap.models import ExpansionNet, PerceptionDecoder

    own = {"expansion_cam": ExpansionNet(tiny_net, stages=["features.2", "features"]),
           "perception_visualization": PerceptionDecoder(tiny_net, image_size=8)}
    for name in captum_topgap.list_methods():
        model = own.get(name, tiny_net)
        assert isinstance(captum_topgap.get_method(name, model), Attribution), name


def test_default_layer_is_the_last_spatial_module_and_is_exposed(tiny_net) -> None:
    cam = captum_topgap.get_method("gradcam", tiny_net)
    # the Sequential ends after its last ReLU, so it is the last module with a spatial output
    assert cam.layer is tiny_net.features and cam.layer_name == "features"
    by_name = captum_topgap.get_method("gradcam", tiny_net, layer="features.2")
    assert by_name.layer is tiny_net.features[2]


def test_default_layer_of_a_timm_resnet_is_its_last_stage() -> None:
    import timm

    model = timm.create_model("resnet18", num_classes=4)
    cam = captum_topgap.get_method("gradcam", model)
    assert cam.layer is model.layer4


def test_default_layer_skips_a_module_called_twice_in_one_forward() -> None:
    class SharedActivation(torch.nn.Module):  # like EfficientNet's one `_swish` used after stem and head
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.head, self.act = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 1), torch.nn.ReLU()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.act(self.head(self.act(self.stem(x)))).mean((2, 3)))

    model = SharedActivation()
    assert captum_topgap.get_method("gradcam", model).layer_name == "head"


def test_register_method_decorator(clean_registry, tiny_net, images) -> None:
    @captum_topgap.register_method("doubled_saliency", description="2 × saliency", aliases=("saliency2",))
    def doubled(model, layer=None, **kwargs):
        return Saliency(lambda x: 2 * model(x))

    assert "doubled_saliency" in captum_topgap.list_methods()
    method = captum_topgap.get_method("Saliency2", tiny_net)
    expected = 2 * Saliency(tiny_net.eval()).attribute(images, target=0)
    assert torch.allclose(method.attribute(images, target=0), expected)
    with pytest.raises(ValueError, match="already registered by 'doubled_saliency'"):
        captum_topgap.register_method("saliency2")(doubled)


def triple_saliency(model, layer=None, **kwargs):
    """3 × saliency, from an installed plugin"""
    return Saliency(lambda x: 3 * model(x))


def test_entry_point_group_adds_methods(monkeypatch, tiny_net, images) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_KEYS", {})
    monkeypatch.setattr(registry, "_loaded", False)
    point = EntryPoint("triple_saliency", f"{__name__}:triple_saliency", registry.ENTRY_POINT_GROUP)
    seen = []

    def fake_entry_points(group):
        seen.append(group)
        return [point]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    assert "triple_saliency" in captum_topgap.list_methods()
    assert seen == ["captum_topgap.methods"]
    method = captum_topgap.get_method("triple-saliency", tiny_net)
    assert captum_topgap.method_spec("triple_saliency").description == "3 × saliency, from an installed plugin"
    expected = 3 * Saliency(tiny_net.eval()).attribute(images, target=1)
    assert torch.allclose(method.attribute(images, target=1), expected)


def test_methods_command_prints_the_table(capsys) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1] for line in out[1:] if line and not line.endswith(").")}
    assert rows["gradcam"] == "grad-cam" and rows["saliency"] == "captum"
    assert len(rows) == len(captum_topgap.list_methods())


def test_registering_a_taken_name_needs_replace(clean_registry, tiny_net) -> None:
    def plain(model, layer=None, **kwargs):
        return Saliency(model)

    with pytest.raises(ValueError, match=r"'saliency' is already registered .*pass replace=True"):
        captum_topgap.register_method("saliency")(plain)
    captum_topgap.register_method("saliency", replace=True)(plain)
    assert captum_topgap.method_spec("saliency").factory is plain
    captum_topgap.register_method("saliency")(plain)  # the same factory again: nothing changes, nothing refused


def test_the_checkouts_top_level_adapters_import_beside_the_installed_name() -> None:
    """From the repository root ``adapters/`` is importable as ``adapters`` and as ``captum_topgap.adapters``:
    the same file under two module names registers its methods once.
    """
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import captum_topgap, adapters.grad_cam, adapters.captum, captum_topgap.adapters.grad_cam; "
            "m = captum_topgap.get_method('gradcam', __import__('torch').nn.Sequential("
            "__import__('torch').nn.Conv2d(3, 2, 3), __import__('torch').nn.Flatten())); "
            "print(type(m).__module__, adapters.grad_cam.TopGAPCAM.__name__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["captum_topgap.adapters.grad_cam", "GradCamBridge[topgap_cam]"]

"""First-layer filters as RGB tiles and channel (neuron) images by gradient ascent, and their CLI under bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from captum_topgap.app import commands
from captum_topgap.app.cli import main
from captum_topgap.app.visualize import class_model, filter_tiles, first_conv, neuron_images
from captum_topgap.train.checkpoints import save_checkpoint


def hand_set_stem() -> nn.Sequential:
    """A 1 × 1 grey-to-RGB convolution, then the first RGB convolution with three hand-set 2 × 2 filters."""
    stem = nn.Sequential(nn.Conv2d(1, 3, 1), nn.Conv2d(3, 3, 2, bias=False))
    weight = torch.zeros(3, 3, 2, 2)
    weight[0, 0] = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # a red ramp
    weight[1] = 5.0  # constant
    weight[2, 2, 0, 0] = -1.0  # one negative blue weight
    with torch.no_grad():
        stem[1].weight.copy_(weight)
    return stem


def test_the_filter_tiles_of_a_hand_set_first_conv_are_known() -> None:
    stem = hand_set_stem()
    name, conv = first_conv(stem)
    assert name == "1" and conv is stem[1]
    tiles = filter_tiles(conv)
    expected = torch.zeros(3, 3, 2, 2)
    expected[0, 0] = torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]])  # min 0, max 3: red only
    expected[2] = 1.0
    expected[2, 2, 0, 0] = 0.0  # min −1 -> 0, the zeros -> 1: white but one cyan pixel
    torch.testing.assert_close(tiles, expected, atol=1e-7, rtol=0)  # the constant filter: zeros (black)


def test_a_model_without_an_rgb_convolution_is_named_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"no nn.Conv2d over 3 input channels, .*pass a model trained on colour"):
        first_conv(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)))
    with pytest.raises(ValueError, match=r"`conv` must convolve 3 input channels"):
        filter_tiles(nn.Conv2d(1, 4, 3))


def colour_readers() -> nn.Conv2d:
    """Channel 0 reads red (+1), channel 1 blue (−1), channel 2 nothing: their gradients are known per pixel."""
    conv = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1.0
        conv.weight[1, 2] = -1.0
    return conv


def test_each_channel_objective_pushes_its_image_along_its_own_weights() -> None:
    conv, lr = colour_readers(), 0.8
    one, values, drawn = neuron_images(conv, conv, [0, 1], (3, 4, 4), steps=1, lr=lr, l2=0.0, progress=False)
    two, _, _ = neuron_images(conv, conv, [0, 1], (3, 4, 4), steps=2, lr=lr, l2=0.0, progress=False)
    step = two - one  # lr · ∂ mean_{y,x} A_k / ∂I = lr · w_k / (4 · 4) at every pixel
    expected = torch.zeros(2, 3, 4, 4)
    expected[0, 0], expected[1, 2] = lr / 16, -lr / 16
    torch.testing.assert_close(step, expected, atol=1e-6, rtol=0)
    assert drawn == [0, 1] and values.shape == (1, 2)
    after = torch.stack([one[0, 0].mean(), -one[1, 2].mean()])  # A_0 = mean red, A_1 = −mean blue
    torch.testing.assert_close(values[0], after - lr / 16, atol=1e-6, rtol=0)  # each rose by lr · ‖w_k‖² / 16


def test_the_l2_term_shrinks_and_the_image_range_clips() -> None:
    conv, lr, l2 = colour_readers(), 0.5, 0.1
    one, _, _ = neuron_images(conv, conv, [2], (3, 4, 4), steps=1, lr=lr, l2=l2, progress=False)
    two, _, _ = neuron_images(conv, conv, [2], (3, 4, 4), steps=2, lr=lr, l2=l2, progress=False)
    torch.testing.assert_close(two, one * (1 - 2 * lr * l2))  # channel 2 reads nothing: only −λ‖I‖² acts
    clipped, _, _ = neuron_images(conv, conv, [0, 1], (3, 4, 4), steps=3, lr=100.0, l2=0.0, progress=False)
    assert bool((clipped[0, 0] == 1.0).all()) and bool((clipped[1, 2] == 0.0).all())
    assert float(clipped[:, 1].min()) > 0.45 and float(clipped[:, 1].max()) < 0.55  # green untouched near grey


def test_a_class_read_off_a_channel_gets_the_same_image_by_both_objectives() -> None:
    """The class and channel objectives share one ascent loop: a class score that is a channel's mean gives the
    same image both ways (the start, the steps and the L2 term are the loop's).
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    by_class, scores = class_model(net, 1, (3, 8, 8), steps=4, lr=0.05, seed=3, progress=False)
    by_channel, values, _ = neuron_images(net, net[0], [1], (3, 8, 8), steps=4, lr=0.05, seed=3, progress=False)
    torch.testing.assert_close(by_channel[0], by_class)
    torch.testing.assert_close(values[:, 0], torch.tensor(scores))


def test_neuron_images_refuse_a_channel_the_layer_lacks_and_a_layer_without_a_map() -> None:
    conv = colour_readers()
    with pytest.raises(ValueError, match=r"`channels` \[3\] out of range: the layer has 3 channels; use 0 … 2\."):
        neuron_images(conv, conv, [0, 3], (3, 4, 4), progress=False)
    net = nn.Sequential(conv, nn.Flatten())
    with pytest.raises(ValueError, match=r"`layer` Flatten outputs \(1, 48\), not a feature map"):
        neuron_images(net, net[1], [0], (3, 4, 4), progress=False)


def test_neuron_images_keep_the_model_state() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    before = net[1].running_mean.clone()
    images, _, drawn = neuron_images(net, net[2], None, (3, 8, 8), steps=2, progress=False)
    assert net.training and torch.equal(net[1].running_mean, before) and not net[0]._forward_hooks
    assert drawn == [0, 1, 2, 3] and images.shape == (4, 3, 8, 8)  # None: the first 8, here all 4


def checkpoint(folder: Path, in_chans: int = 3) -> Path:
    """A ResNet-18 of three classes in the project's checkpoint format (random weights, 32 px)."""
    torch.manual_seed(0)
    kwargs = {"num_classes": 3, "in_chans": in_chans}
    path = folder / f"resnet18_{in_chans}.pt"
    save_checkpoint(path, model=timm.create_model("resnet18", **kwargs).state_dict(),
                    metadata={"model": "resnet18", "model_kwargs": kwargs, "size": 32})
    return path


def test_cli_draws_the_filters_and_the_neurons(tmp_path: Path, capsys) -> None:
    path, out = checkpoint(tmp_path), tmp_path / "vis"
    assert main(["visualize", "filters", "--checkpoint", str(path), "--out", str(out)]) == 0
    assert f"first convolution conv1: 64 filters of 7 × 7 -> {out / 'filters.png'}" in capsys.readouterr().out
    assert main(["visualize", "neurons", "--checkpoint", str(path), "--channels", "0,5", "--steps", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()  # at 32 px layer4 is 1 × 1: Grad-CAM's layer is layer3
    assert [line.split(":")[0] for line in printed[:2]] == ["layer layer3 channel 0", "layer layer3 channel 5"]
    assert printed[-1] == f"wrote {out / 'neurons_layer3.png'}"
    assert sorted(p.name for p in out.iterdir()) == ["filters.png", "neurons_layer3.png"]


BAD = [  # (what, options, the one line on stderr)
    ("neurons", ["--layer", "layer9"], "error: --layer: `layer` 'layer9' is not a submodule of the model; closest "
                                       "names: ['layer4', 'layer3', 'layer2']"),
    ("neurons", ["--channels", "0,256"], "error: `channels` [256] out of range: the layer has 256 channels; use 0 … "
                                         "255."),
    ("neurons", ["--layer", "fc"], "error: `layer` Linear outputs (1, 3), not a feature map (N, C, H, W)"),
    ("filters", [], "error: --checkpoint: the model has no nn.Conv2d over 3 input channels, so it has no RGB filters "
                    "to draw; pass a model trained on colour images (in_chans=3)"),
]


@pytest.mark.parametrize(("what", "options", "message"), BAD, ids=[" ".join([w, *o]) for w, o, _ in BAD])
def test_cli_bad_input_is_one_line_with_status_2_and_writes_nothing(what: str, options: list[str], message: str,
                                                                   tmp_path: Path, capsys) -> None:
    path = checkpoint(tmp_path, in_chans=1 if what == "filters" else 3)
    assert main(["visualize", what, "--checkpoint", str(path), "--steps", "2", *options,
                 "--out", str(tmp_path / "vis")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"captum-topgap visualize: {message}"), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_patches_keep_their_default_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    monkeypatch.setattr(commands, "visualize_units", lambda args: seen.setdefault("channels", args.channels) and 0)
    assert main(["visualize", "patches", "--checkpoint", "x.pt", "--layer", "layer1"]) == 0
    assert seen["channels"] == [0, 1, 2, 3]

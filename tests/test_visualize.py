"""Maximally activating patches (receptive fields, bounded heap), class-model visualisation, their CLI."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from captum_topgap.app.cli import main
from captum_topgap.app.visualize import (
    class_model,
    layer_chain,
    max_activating_patches,
    receptive_field,
    top_activations,
)
from captum_topgap.data import TexturedMNIST

from .conftest import TinyNet


def known_stack() -> nn.Sequential:
    stack = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.AvgPool2d(2))
    with torch.no_grad():
        for conv in stack[:2]:
            conv.weight.fill_(0.1)
    return stack


def test_receptive_field_of_a_known_stack_matches_the_hand_computed_box() -> None:
    stack = known_stack()
    # r: 1 -> 3 -> 5 -> 7, j: 1 -> 1 -> 2 -> 4, centre: 0 -> 0 -> 0 -> 0.5·2 = 1
    assert receptive_field(layer_chain(stack, stack[2], torch.zeros(1, 3, 24, 24))) == (7, 4, 1.0)
    x = torch.rand(1, 3, 24, 24, requires_grad=True)
    stack(x)[0, 0, 2, 3].backward()
    rows, cols = x.grad[0].abs().sum(0).nonzero(as_tuple=True)
    measured = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
    data = [(torch.rand(3, 24, 24), 0, None)] * 2
    box = next(p.box for p in max_activating_patches(stack, stack[2], 0, data, n=64, progress=False)
               if p.position == (2, 3))
    assert box == measured == (6, 10, 13, 17)
    with pytest.raises(ValueError, match=r"`channel` 999 out of range: the layer has \d+ channels; use 0 … "):
        max_activating_patches(stack, stack[2], 999, data, progress=False)


def test_the_bounded_heap_returns_the_same_patches_as_sorting_everything() -> None:
    torch.manual_seed(0)
    net = TinyNet().eval()
    data = TexturedMNIST("test", size=16, limit=20)
    streamed = top_activations(net, net.features[4], 5, data, n=7, batch_size=6, progress=False)
    with torch.no_grad():
        everything = net.features(torch.stack([data[i][0] for i in range(20)]))[:, 5]
    values, flat = everything.flatten().sort(descending=True)
    expected = [(v, int(i) // 256, int(i) % 256 // 16, int(i) % 16)
                for v, i in zip(values[:7].tolist(), flat[:7], strict=True)]
    assert [(round(v, 5), i, y, x) for v, i, y, x in streamed] == [(round(v, 5), i, y, x) for v, i, y, x in expected]


def test_class_model_raises_the_class_score_monotonically_at_first() -> None:
    torch.manual_seed(0)
    net = TinyNet().train()
    image, scores = class_model(net, 2, (3, 16, 16), steps=15, lr=0.05, l2=1e-3)
    assert all(b > a for a, b in itertools.pairwise(scores))
    assert image.shape == (3, 16, 16) and net.training  # model state restored
    plain, _ = class_model(net, 2, (3, 16, 16), steps=6, lr=0.05)
    jittered, _ = class_model(net, 2, (3, 16, 16), steps=6, lr=0.05, jitter=2)
    blurred, _ = class_model(net, 2, (3, 16, 16), steps=6, lr=0.05, blur_every=3)
    assert torch.isfinite(jittered).all() and not torch.equal(jittered, plain) and not torch.equal(blurred, plain)
    assert blurred.diff(dim=-1).abs().mean() < plain.diff(dim=-1).abs().mean()  # the blur smooths


def test_cli_visualize_patches_and_classes(tmp_path: Path, capsys) -> None:
    common = ["--size", "32", "--limit", "32", "--p", "1"]
    assert main(["train", "--model", "resnet18", "--epochs", "1", "--batch-size", "16", *common,
                 "--out", str(tmp_path / "run")]) == 0
    checkpoint = str(tmp_path / "run" / "best.pt")
    assert main(["visualize", "patches", "--checkpoint", checkpoint, "--layer", "layer1", "--channels", "0,3",
                 "--n", "4", *common, "--out", str(tmp_path / "vis")]) == 0
    assert "receptive field box" in capsys.readouterr().out
    assert main(["visualize", "patches", "--checkpoint", checkpoint, "--layer", "layer1", "--channels", "999",
                 *common, "--out", str(tmp_path / "vis")]) == 2
    assert "error: `channel` 999 out of range: the layer has 64 channels" in capsys.readouterr().err
    assert main(["visualize", "classes", "--checkpoint", checkpoint, "--classes", "1,7", "--steps", "5",
                 "--out", str(tmp_path / "vis")]) == 0
    written = sorted(p.name for p in (tmp_path / "vis").glob("*.png"))
    assert written == ["class1.png", "class7.png", "classes.png", "layer1_channel0.png", "layer1_channel3.png"]


def test_explain_accepts_a_smooth_composition(tmp_path: Path, capsys) -> None:
    out = tmp_path / "smooth.png"
    assert main(["explain", "--model", "resnet18", "--size", "32", "--method", "smooth:gradcam++",
                 "--option", "smooth:gradcam++.nt_samples=3", "--out", str(out)]) == 0
    assert "with smooth:gradcam++" in capsys.readouterr().out and out.is_file()

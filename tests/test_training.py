"""The one training loop: losses, checkpoints that load with weights_only=True, exact resume, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from captum_topgap.app.cli import main
from captum_topgap.data import TexturedMNIST
from captum_topgap.train.checkpoints import load_checkpoint, load_model
from captum_topgap.train.loop import TrainConfig, train
from captum_topgap.train.losses import topgap_loss
from captum_topgap.train.objectives import CrossEntropy, TopGAPObjective

from .conftest import tiny_topgap


def test_topgap_loss_is_cross_entropy_plus_lambda_mean_abs_cam() -> None:
    torch.manual_seed(0)
    cam = torch.randn(4, 3, 5, 5)
    logits, target = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    expected = F.cross_entropy(logits, target) + 0.3 * cam.abs().sum() / cam.numel()
    assert torch.allclose(topgap_loss(logits, cam, target, sparsity=0.3), expected)
    assert torch.equal(topgap_loss(logits, cam, target, sparsity=0.0), F.cross_entropy(logits, target))
    with pytest.raises(ValueError, match=r"`sparsity` \(λ\) must be ≥ 0"):
        topgap_loss(logits, cam, target, sparsity=-1.0)


def test_sparseness_gradient_pushes_the_map_to_zero() -> None:
    """With one class the cross-entropy is 0 whatever the map, so topgap_loss's gradient is the sparseness
    term's alone: λ · sign(CAM) / (N·C·H·W), and one step shrinks every non-zero entry.
    """
    cam = torch.tensor([[[[2.0, -1.0], [0.5, 0.0]]]], requires_grad=True)
    topgap_loss(cam.flatten(2).mean(-1), cam, torch.tensor([0]), sparsity=0.4).backward()
    assert torch.allclose(cam.grad, torch.tensor([[[[0.1, -0.1], [0.1, 0.0]]]]))
    stepped = (cam - 1.0 * cam.grad).detach()
    assert float(stepped.abs().sum()) < float(cam.detach().abs().sum())


@pytest.fixture(scope="module")
def tiny_data() -> TexturedMNIST:
    return TexturedMNIST("train", p=0.0, q=0.0, size=16, limit=48)


def run(tiny_data, epochs: int, out: Path | None, resume: Path | None = None):
    torch.manual_seed(1)
    model = tiny_topgap(num_classes=10)  # has Dropout: the global RNG must be restored too
    config = TrainConfig(epochs=epochs, batch_size=8, lr=0.05, progress=False, seed=3)
    history = train(model, TopGAPObjective(0.01), tiny_data, tiny_data, config, out, resume, {"model": "tiny"})
    return model, history


def test_resume_continues_to_the_same_result(tiny_data, tmp_path: Path) -> None:
    straight, straight_history = run(tiny_data, 3, tmp_path / "straight")
    run(tiny_data, 1, tmp_path / "split")
    resumed, resumed_history = run(tiny_data, 3, tmp_path / "split", resume=tmp_path / "split" / "last.pt")
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert resumed_history == straight_history and len(resumed_history) == 3


def test_resume_applies_a_new_learning_rate_and_says_so(tiny_data, tmp_path: Path) -> None:
    run(tiny_data, 1, tmp_path)
    torch.manual_seed(1)
    model = tiny_topgap(num_classes=10)
    config = TrainConfig(epochs=2, batch_size=8, lr=0.5, progress=False, seed=3)
    with pytest.warns(UserWarning, match=r"resume: continuing with lr 0\.5 \(was 0\.05\)"):
        train(model, TopGAPObjective(0.01), tiny_data, tiny_data, config, tmp_path, tmp_path / "last.pt")
    last = load_checkpoint(tmp_path / "last.pt")
    assert {group["lr"] for group in last["optimizer"]["param_groups"]} == {0.5} and last["config"]["lr"] == 0.5
    with pytest.raises(ValueError, match=r"`train_data` is empty: there is nothing to train on"):
        train(model, TopGAPObjective(0.01), [], tiny_data, config)


def test_checkpoints_load_with_weights_only(tiny_data, tmp_path: Path) -> None:
    _model, history = run(tiny_data, 2, tmp_path)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and last["metadata"] == {"model": "tiny"} and last["history"] == history
    best = load_checkpoint(tmp_path / "best.pt")
    best_epoch = max(range(2), key=lambda i: (history[i]["val_accuracy"], -history[i]["train_loss"]))
    assert best["epoch"] == best_epoch and "optimizer" not in best
    assert json.loads((tmp_path / "history.json").read_text()) == history


def test_restore_best_ends_with_the_best_validation_epoch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    images = torch.randn(16, 3, 2, 2)
    labels = (images[:, 0, 0, 0] > 0).long()
    train_data = [(x, int(y), None) for x, y in zip(images, labels, strict=True)]
    flipped = [(x, 1 - int(y), None) for x, y in zip(images, labels, strict=True)]  # fitting costs val accuracy

    def fit(restore_best: bool, out: Path, epochs: int = 4, resume: Path | None = None) -> tuple[torch.nn.Module, list]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        config = TrainConfig(epochs=epochs, batch_size=4, lr=0.1, progress=False, restore_best=restore_best)
        return model, train(model, CrossEntropy(), train_data, flipped, config, out, resume)

    kept, history = fit(True, tmp_path / "best")
    scores = [(record["val_accuracy"], -record["train_loss"]) for record in history]
    assert scores.index(max(scores)) < 3  # the best epoch is not the last, so keeping it is visible
    assert [record.get("restored", False) for record in history] == [i == scores.index(max(scores)) for i in range(4)]
    best = load_checkpoint(tmp_path / "best" / "best.pt")["model"]
    assert all(torch.equal(kept.state_dict()[key], value) for key, value in best.items())
    last, last_history = fit(False, tmp_path / "last")
    assert "restored" not in str(last_history)
    assert all(torch.equal(last.state_dict()[key], value)
               for key, value in load_checkpoint(tmp_path / "last" / "last.pt")["model"].items())
    with pytest.raises(ValueError, match=r"restore_best=True needs `val_data`"):
        train(last, CrossEntropy(), train_data, None, TrainConfig(epochs=1, progress=False, restore_best=True))
    fit(True, tmp_path / "split", epochs=2)  # a resumed run keeps the best epoch of before the resume too
    resumed, _ = fit(True, tmp_path / "split", resume=tmp_path / "split" / "last.pt")
    assert all(torch.equal(resumed.state_dict()[key], value) for key, value in best.items())
    fit(True, tmp_path / "lost", epochs=2)
    (tmp_path / "lost" / "best.pt").unlink()
    with pytest.raises(ValueError, match=r"resume with restore_best: .*best\.pt is missing"):
        fit(True, tmp_path / "lost", resume=tmp_path / "lost" / "last.pt")


def test_training_learns_a_trivial_cue() -> None:
    data = TexturedMNIST("train", p=0.0, q=0.0, size=16, limit=64)  # background colour = label
    torch.manual_seed(0)
    from captum_topgap.models import topgap

    model = topgap("resnet18", num_classes=10, k=4)
    history = train(model, CrossEntropy(), data, data, TrainConfig(epochs=6, batch_size=16, lr=0.05, progress=False))
    assert history[-1]["train_loss"] < history[0]["train_loss"] and history[-1]["val_accuracy"] >= 0.5


def test_cli_train_restore_best_names_the_kept_epoch(tmp_path: Path, capsys) -> None:
    assert main(["train", "--model", "resnet18", "--size", "16", "--limit", "32", "--epochs", "3", "--batch-size",
                 "16", "--lr", "0.05", "--restore-best", "--out", str(tmp_path)]) == 0
    best = load_checkpoint(tmp_path / "best.pt")
    record = best["history"][best["epoch"]]
    assert f"epoch {best['epoch'] + 1} kept, val accuracy {record['val_accuracy']:.4f}" in capsys.readouterr().out


def test_cli_train_and_evaluate(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--model", "topgap_resnet18", "--k", "16", "--size", "32", "--limit", "64",
                 "--epochs", "1", "--batch-size", "16", "--out", str(out)]) == 0
    assert "test accuracy (p=1.0)" in capsys.readouterr().out
    model = load_model(out / "best.pt")
    assert type(model).__name__ == "TopGAPNet" and model.k == 16 and not model.training
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--size", "32", "--limit", "16",
                 "--methods", "topgap_cam,gradcam", "--erf-distance", "--robustness", "pgd3,square5",
                 "--region", "all,background", "--eps", "8/255", "--robust-limit", "16", "--corruptions",
                 "--json", str(report)]) == 0
    results = json.loads(report.read_text())
    assert 0.0 <= results["erf_distance"]["background_share"] <= 1.0
    assert 0.0 <= results["accuracy"] <= 1.0
    assert set(results["heatmaps"]) == {"topgap_cam", "gradcam"}
    assert all(0.0 <= v["iou"] <= 1.0 for v in results["heatmaps"].values())
    for table in results["robustness"].values():  # all 16 test images: the clean column is the accuracy
        assert table["clean"] == results["accuracy"] == results["corruptions"]["clean"]
        assert table["pgd3"] <= table["clean"] and table["square5"] <= table["clean"]
    assert set(results["robustness"]) == {"all", "background"}
    assert set(results["corruptions"]) == {"clean", "gaussian_noise", "gaussian_blur", "contrast", "brightness", "jpeg"}
    assert "robust accuracy (background pixels, eps=0.03137)" in capsys.readouterr().out
    audited = tmp_path / "audit.json"
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--size", "32", "--limit", "8",
                 "--robustness", "audit", "--audit-attacks", "pgd20,pgd30,square20",
                 "--surrogate", str(out / "best.pt"), "--robust-limit", "8", "--json", str(audited)]) == 0
    audit = json.loads(audited.read_text())["audit"]
    assert list(audit)[:5] == ["clean", "pgd20", "pgd30", "square20", "transfer:run"]
    assert audit["robust_accuracy"] == audit["transfer:run"] <= audit["square20"] <= audit["pgd20"] <= audit["clean"]
    assert set(audit["sweep"]) == {"16/255", "32/255", "64/255", "128/255"}
    printed = capsys.readouterr().out
    assert f"  verdict: {audit['verdict']} (" in printed and "  rules: gradient-masked iff" in printed

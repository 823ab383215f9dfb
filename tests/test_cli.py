"""The command line under bad values and failures: one line on stderr, exit status 2 for usage errors and 1
for failed work, no traceback without ``--debug``, nothing half-written, and a resume that checks its file.
"""

from __future__ import annotations

import errno
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from captum_topgap.app.cli import main
from captum_topgap.train import loop
from captum_topgap.train.checkpoints import load_checkpoint, save_checkpoint

TRAIN = ["train", "--model", "resnet18", "--size", "32", "--limit", "32", "--batch-size", "16"]
"""A training run of seconds: ResNet-18 on 32 Textured MNIST images of 32 px."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with best.pt and last.pt of one epoch."""
    out = tmp_path_factory.mktemp("run")
    assert main([*TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    return out


def nan_checkpoint(trained: Path, folder: Path) -> Path:
    state = load_checkpoint(trained / "best.pt")
    state["model"] = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in state["model"].items()}
    path = folder / "nan.pt"
    save_checkpoint(path, **state)
    return path


def text_file(_trained: Path, folder: Path) -> Path:
    path = folder / "notes.pt"
    path.write_text("not a checkpoint")
    return path


USAGE = [  # (argv, what stderr names)
    (["train", "--limit", "0"], "argument --limit: must be a whole number ≥ 1, got '0'"),
    (["sweep", "--candidate", "baseline", "--images", "0"], "argument --images: must be a whole number ≥ 1, got '0'"),
    (["sweep", "--candidate", "baseline", "--epochs", "x"], "argument --epochs: must be a whole number, got 'x'"),
    (["train", "--limit", "-5"], "argument --limit: must be a whole number ≥ 1, got '-5'"),
    (["train", "--epochs", "0"], "argument --epochs: must be a whole number ≥ 1, got '0'"),
    (["train", "--epochs", "two"], "argument --epochs: must be a whole number, got 'two'"),
    (["train", "--lr", "nan"], "argument --lr: must be a finite number, got 'nan'"),
    (["train", "--lr", "0"], "argument --lr: must be a number > 0, got '0'"),
    (["train", "--batch-size", "0"], "argument --batch-size: must be a whole number ≥ 1"),
    (["train", "--p", "1.5"], "argument --p: must be a number ≥ 0 and ≤ 1, got '1.5'"),
    (["train", "--k", "0"], "argument --k: must be a whole number ≥ 1, got '0'"),
    (["train", "--k", "1.5"], "argument --k: must be a number > 0 and ≤ 1, got '1.5'"),
    (["train", "--size", "8"], "argument --size: must be a whole number ≥ 16 and ≤ 4096, got '8'"),
    (["train", "--device", "tpu"], "argument --device: 'tpu' is not a torch device; pass 'cpu', 'cuda' or 'cuda:0'"),
    (["train", "--weight-decay", "-1"], "argument --weight-decay: must be a number ≥ 0, got '-1'"),
    (["train", "--variant", "magic"], "argument --variant: invalid choice: 'magic'"),
    (["train", "--resume", "missing.pt"], "--resume: checkpoint missing.pt does not exist"),
    (["train", "--method", "expansion"], "--method expansion needs --localizer CKPT"),
    (["evaluate", "--checkpoint", "missing.pt"], "--checkpoint: checkpoint missing.pt does not exist"),
    (["evaluate", "--checkpoint", "x", "--explain-limit", "-1"],
     "argument --explain-limit: must be a whole number ≥ 1"),
    (["evaluate", "--checkpoint", "x", "--eps", "-0.1"], "argument --eps: must be a budget in [0, 1]"),
    (["evaluate", "--checkpoint", "x", "--eps", "8/0"], "argument --eps: must be a budget in [0, 1]"),
    (["evaluate", "--checkpoint", "x", "--robust-limit", "0"], "argument --robust-limit: must be a whole number ≥ 1"),
    (["evaluate", "--checkpoint", "x", "--surrogate", "y.pt"], "--surrogate is used by the audit only"),
    (["evaluate", "--checkpoint", "x", "--robustness", "audit", "--audit-attacks", "square100"],
     "--audit-attacks must start with pgd20 (the reference attack), got 'square100'"),
    (["evaluate", "--checkpoint", "x", "--robustness", "audit", "--audit-attacks", "pgd20,fgsm"],
     "--audit-attacks: attack='fgsm' is not known"),
    (["evaluate", "--checkpoint", "x", "--data", "cifar10"], "--data cifar10 needs --root: the folder that holds"),
    (["explain", "--method", "gradkam"], "--method: unknown method 'gradkam'; closest names: ["),
    (["explain", "--compare", "gradcam,nope"], "--compare: unknown method 'nope'"),
    (["explain", "--option", "gradcam"], "--option must look like METHOD.NAME=VALUE, got 'gradcam'"),
    (["explain", "--option", "nope.x=1"], "--option 'nope.x=1': unknown method 'nope'"),
    (["explain", "--model", "resnet_nope"], "--model 'resnet_nope' is not a timm model name"),
    (["explain", "missing.png"], "IMAGE missing.png does not exist"),
    (["explain", "--target", "-1"], "argument --target: must be a whole number ≥ 0, got '-1'"),
    (["visualize", "classes", "--checkpoint", "x", "--classes", "a"], "argument --classes: must be a whole number"),
    (["visualize", "patches", "--checkpoint", "x", "--n", "0"], "argument --n: must be a whole number ≥ 1"),
    (["sweep", "--candidate", "baseline", "--seeds", ""], "argument --seeds: must list at least one whole number"),
    (["sweep", "--candidate", "magic"], "--candidate: "),
    (["preview", "--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["preview", "--n", "0"], "argument --n: must be a whole number ≥ 1, got '0'"),
    (["demo", "--seed", "-1"], "argument --seed: must be a whole number ≥ 0, got '-1'"),
    (["demo", "--scenarios", "object,nope"], "--scenarios must list some of object, robustness, spurious"),
    (["sweep", "--scenario", "robustness", "--candidate", "topgap:1"],
     "--candidate: candidate 'topgap:1': in the robustness scenario use 'baseline' or 'topgap:K:λ'"),
    (["bench", "--repeats", "0"], "argument --repeats: must be a whole number ≥ 1, got '0'"),
    (["bench", "--threads", "-2"], "argument --threads: must be a whole number ≥ 1, got '-2'"),
    (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
    (["train", "--model", "resnet18", "--k", "8"],
     "--k is Top-GAP's top-k; --model resnet18 is not a topgap_* model (drop --k, or train topgap_resnet18)"),
]


@pytest.mark.parametrize(("argv", "message"), USAGE, ids=[" ".join(argv) for argv, _ in USAGE])
def test_usage_errors_are_one_line_with_exit_status_2(argv: list[str], message: str, tmp_path: Path, capsys,
                                                      monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert "Traceback" not in captured.err and not captured.out
    assert not any(tmp_path.iterdir()), "a refused command wrote files"


def test_explain_and_preview_report_the_file_they_wrote(tmp_path: Path, capsys) -> None:
    assert main(["preview", "--n", "2", "--size", "32", "--out", str(tmp_path / "grid")]) == 0
    assert (tmp_path / "grid.png").is_file() and f"wrote {tmp_path / 'grid.png'} " in capsys.readouterr().out
    assert main(["explain", "--model", "resnet18", "--size", "32", "--method", "gradcam",
                 "--out", str(tmp_path / "cat")]) == 0
    assert (tmp_path / "cat.png").is_file() and capsys.readouterr().out.rstrip().endswith(f": {tmp_path / 'cat.png'}")


def test_the_usage_cases_are_counted() -> None:
    assert len(USAGE) >= 35


@pytest.mark.parametrize(("make", "message"), [
    (nan_checkpoint, "has non-finite weights (conv1.weight …): its training diverged; retrain with a lower --lr"),
    (text_file, "is not a checkpoint torch can read safely"),
])
def test_bad_checkpoints_are_refused_before_any_work(make, message: str, trained: Path, tmp_path: Path,
                                                     capsys) -> None:
    path = make(trained, tmp_path)
    assert main(["evaluate", "--checkpoint", str(path), "--size", "32", "--limit", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("captum-topgap evaluate: error: ") and message in err and err.count("\n") == 1


def test_resume_checks_what_it_needs(trained: Path, tmp_path: Path, capsys) -> None:
    common = [*TRAIN, "--epochs", "3", "--out", str(tmp_path / "next")]
    assert main([*common, "--resume", str(trained / "best.pt")]) == 2
    assert "has no optimiser state (a best.pt?); pass the last.pt of the same folder" in capsys.readouterr().err
    assert main([*common, "--resume", str(trained / "last.pt"), "--optimizer", "adam"]) == 2
    assert "was trained with --optimizer sgd, this run uses adam; pass the same optimiser" in capsys.readouterr().err
    assert main([*TRAIN, "--epochs", "1", "--out", str(tmp_path / "x"), "--resume", str(trained / "last.pt")]) == 2
    assert "already ran 1 epochs; pass more --epochs than that" in capsys.readouterr().err
    assert main([*TRAIN[:2], "vgg11", *TRAIN[3:], "--epochs", "3", "--resume", str(trained / "last.pt"),
                 "--out", str(tmp_path / "y")]) == 2
    assert "does not fit this model" in capsys.readouterr().err


def test_a_diverging_run_stops_with_a_hint_and_keeps_no_nan_weights(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--lr", "1e12", "--out", str(out)]) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bar
    assert re.fullmatch(r"captum-topgap train: error: the (training loss|weights) became .*: the optimisation "
                        r"diverged; lower the learning rate \(now 1e\+12\)\. .*", last), last
    for checkpoint in out.glob("*.pt"):  # an epoch that finished before the divergence: finite weights
        assert all(torch.isfinite(v).all() for v in load_checkpoint(checkpoint)["model"].values()
                   if v.is_floating_point())


def test_a_full_disk_says_so_and_leaves_no_partial_file(tmp_path: Path, capsys, monkeypatch) -> None:
    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "1", "--out", str(out)]) == 1
    assert "no space left on the device writing" in capsys.readouterr().err
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.pt"))


def test_stale_partial_files_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt.tmp").write_bytes(b"half a checkpoint")
    assert main([*TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.json", "last.pt"]


def test_ctrl_c_says_how_to_resume_and_the_last_epoch_is_kept(tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "run"
    real = loop.accuracy
    calls = []

    def interrupted(*args: object, **kwargs: object) -> float:
        calls.append(1)
        if len(calls) == 2:  # during the second epoch's validation
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "accuracy", interrupted)
    assert main([*TRAIN, "--epochs", "3", "--out", str(out)]) == 130
    assert f"interrupted; continue with --resume {out}/last.pt" in capsys.readouterr().err
    assert load_checkpoint(out / "last.pt")["epoch"] == 0
    monkeypatch.setattr(loop, "accuracy", real)
    assert main([*TRAIN, "--epochs", "2", "--out", str(out), "--resume", str(out / "last.pt")]) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 1


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"IMAGE .*missing\.png does not exist"):
        main(["explain", str(tmp_path / "missing.png"), "--debug"])


def test_help_lists_every_command_and_each_option_shows_its_default(capsys) -> None:
    from captum_topgap.app.cli import build_parser

    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert "bench" in commands and all(f"    {name} " in top for name in commands)
    assert "compare |" not in top and "`captum-topgap COMMAND --help` lists" in " ".join(top.split())
    assert main(["train", "--help"]) == 0
    train = " ".join(capsys.readouterr().out.split())
    for shown in ("--epochs EPOCHS (default: 10)", "--lr LR (default: 0.01)", "(default: sgd)",
                  "--seed SEED (default: 0)", "--q Q digit-texture randomness (Textured MNIST) (default: 0.0)"):
        assert shown in train, shown
    assert "(default: None)" not in train and "(default: False)" not in train


def test_ctrl_c_while_the_libraries_import_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """SIGINT half a second after the start lands while torch and the explainability libraries import."""
    script = Path(sys.executable).with_name("captum-topgap")
    process = subprocess.Popen([str(script), "train", "--out", str(tmp_path / "run")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err


OUT_COMMANDS = [
    ["train", "--epochs", "1"],
    ["explain", "photo.png"],
    ["preview"],
    ["compare"],
    ["demo", "--quick"],
    ["sweep", "--candidate", "baseline"],
]


@pytest.mark.parametrize("command", OUT_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("where", ["unwritable", "existing-file"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(command: list[str], where: str, tmp_path: Path,
                                                                      capsys) -> None:
    """A folder command given a file, a PNG command given a folder named like its PNG, or ``/proc``."""
    folder = command[0] not in ("explain", "preview")
    taken = tmp_path / ("taken" if folder else "taken.png")
    taken.write_text("mine") if folder else taken.mkdir()
    out = "/proc/x" if where == "unwritable" else str(taken)
    start = time.perf_counter()
    assert main([*command, "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert time.perf_counter() - start < 5, "refused before any work"
    assert len(err.splitlines()) == 1 and f"error: --out {out}" in err, err
    expected = "cannot be written" if where == "unwritable" else f"is a {'file' if folder else 'folder'}; pass"
    assert expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [taken.name] and (taken.is_dir() or taken.read_text())


def test_evaluate_json_that_cannot_be_written_is_refused_before_the_evaluation(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--json", "/proc/x/results.json"]) == 2
    err = capsys.readouterr().err
    assert "error: --json /proc/x/results.json cannot be written" in err and "missing.pt" not in err

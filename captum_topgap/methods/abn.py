"""ABN attention: the attention map M(x) an Attention Branch Network computes in its forward pass (Fukui et al.,
CVPR 2019).

    M(x) = σ(BN(W₃ ⋆ maps(g(x))))   (one map per image, the same for every class),   up(M) to the input size

No backward pass. M(x) is class-agnostic — the attention branch's one map weights the features every class
reads — so ``target`` is checked (range, count) but does not change the map.

Example:
    >>> import timm
    >>> model = timm.create_model("abn_resnet18", num_classes=3).eval()
    >>> ABNAttention(model).attribute(torch.rand(2, 3, 48, 48), target=[0, 2]).shape
    torch.Size([2, 1, 48, 48])
"""

from __future__ import annotations

import torch
from torch import nn

from captum_topgap._checks import TargetType, check_bool
from captum_topgap.attribution import ForwardWithArgs, MethodAttribution, resolve_labels, upsample_to
from captum_topgap.registry import register_method


def abn_attention(model: nn.Module, inputs: torch.Tensor, target: TargetType = None,
                  upsample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Perception logits (N, K) and M(x) (N, 1, H, W) — at ``layer3``'s grid with ``upsample=False`` — from one
    forward without gradients; ``target`` is checked against the logits.

    Example:
        >>> import timm
        >>> model = timm.create_model("abn_resnet18", num_classes=3).eval()
        >>> logits, attention = abn_attention(model, torch.rand(1, 3, 48, 48), upsample=False)
        >>> tuple(attention.shape), bool(((attention >= 0) & (attention <= 1)).all())
        ((1, 1, 3, 3), True)
    """
    own = model.model if isinstance(model, ForwardWithArgs) else model
    if not callable(getattr(own, "attention_branch", None)):
        raise TypeError(f"'abn_attention' needs an Attention Branch Network (forward(x, return_attention=True)), got "
                        f"{type(own).__name__}; build one with timm.create_model('abn_resnet18', ...).")
    with torch.no_grad():
        out = model(inputs, return_attention=True)
    resolve_labels(target, len(inputs), lambda: out.logits, out.logits.shape[1])
    return out.logits, upsample_to(out.attention, inputs.shape[-2:]) if upsample else out.attention


@register_method("abn_attention", origin="captum-topgap", kind="model", aliases=("attention_branch",),
                 description="ABN's attention map M(x): one forward, class-agnostic (Fukui et al.)")
class ABNAttention(MethodAttribution):
    """An Attention Branch Network's attention map as a Captum attribution: (N, 1, H, W) in [0, 1].

    Args:
        model: an ABN (``timm.create_model("abn_resnet18", ...)``).
        upsample: bilinear resize to the input (``False``: ``layer3``'s resolution).

    Example:
        >>> import timm
        >>> model = timm.create_model("abn_resnet18", num_classes=4)
        >>> ABNAttention(model, upsample=False).attribute(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 1, 4, 4])
    """

    method_name = "abn_attention"
    target_from_own_forward = True
    class_agnostic = True

    def __init__(self, model: nn.Module, layer: None = None, upsample: bool = True) -> None:
        if layer is not None:
            raise ValueError("`layer` is not used by 'abn_attention': it reads the model's own attention map; leave "
                             "it None.")
        super().__init__(model)
        self.upsample = check_bool(upsample, "upsample")

    def _attribute(self, inputs: torch.Tensor, labels: TargetType) -> torch.Tensor:
        return abn_attention(self.network, inputs, labels, self.upsample)[1]

"""captum-topgap: Top-GAP, ReFF, Augmented Grad-CAM and Expansion CAM for the PyTorch explainability stack.

Every method is reachable by name and behaves like a Captum attribution:

    >>> import torch, captum_topgap
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
    ...                           torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> captum_topgap.get_method("gradcam", net).attribute(torch.rand(1, 3, 8, 8), target=0).shape
    torch.Size([1, 1, 8, 8])
"""

from captum_topgap import _compat, models
from captum_topgap._state import preserved_state
from captum_topgap.pooling import TopKPool, top_k_pool
from captum_topgap.registry import get_method, list_methods, method_spec, register_method
from captum_topgap.train.checkpoints import load_model

__version__ = "0.1.0"

_compat.install()

__all__ = ["TopKPool", "__version__", "get_method", "list_methods", "load_model", "method_spec", "models",
           "preserved_state", "register_method", "top_k_pool"]

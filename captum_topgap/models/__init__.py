"""Models: Top-GAP networks (registered in timm on import) and the CIFAR PreAct ResNet-18."""

from captum_topgap.models.preact import PreActResNet18, PreActResNetFeatures
from captum_topgap.models.pseudo_annotator import PseudoAnnotator
from captum_topgap.models.topgap import TopGAPNet, topgap

__all__ = ["PreActResNet18", "PreActResNetFeatures", "PseudoAnnotator", "TopGAPNet", "topgap"]

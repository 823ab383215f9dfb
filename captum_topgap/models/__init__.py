"""Models: Top-GAP networks, Attention Branch Networks and box-head classifiers (registered in timm on import),
the CIFAR PreAct ResNet-18, the expansion network of Expansion CAM, the decoder of Perception Visualization and
ReFF's pix2pix pseudo-annotator.
"""

from captum_topgap.models.abn import ABNOutput, ABNResNet
from captum_topgap.models.boxhead import BoxHeadResNet, BoxOutput
from captum_topgap.models.expansion import ExpansionNet
from captum_topgap.models.perception import PerceptionDecoder
from captum_topgap.models.preact import PreActResNet18, PreActResNetFeatures
from captum_topgap.models.pretrained import pretrained_backbone
from captum_topgap.models.pseudo_annotator import PseudoAnnotator
from captum_topgap.models.topgap_net import TopGAPNet, topgap

__all__ = [
           "ABNOutput",
           "ABNResNet",
           "BoxHeadResNet",
           "BoxOutput",
           "ExpansionNet",
           "PerceptionDecoder",
           "PreActResNet18",
           "PreActResNetFeatures",
           "PseudoAnnotator",
           "TopGAPNet",
           "pretrained_backbone",
           "topgap",
]

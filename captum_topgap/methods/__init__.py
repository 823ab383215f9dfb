"""This project's own methods: per method a torch-native core function and its Captum attribution class,
registered by name on import (the registry imports this package on first use).
"""

from captum_topgap.methods.abn import ABNAttention, abn_attention
from captum_topgap.methods.augmented import AugmentedGradCAM, augmented_cam
from captum_topgap.methods.cam import CAM, class_activation_map
from captum_topgap.methods.erf import ERF, erf, erf_at
from captum_topgap.methods.expansion_cam import ExpansionCAM, expansion_cams
from captum_topgap.methods.gradcam import DifferentiableGradCAM, PositiveGradCAM, grad_cam_maps
from captum_topgap.methods.perception import PerceptionVisualization, perception_maps
from captum_topgap.methods.recipro import ReciproCAM, recipro_cam
from captum_topgap.methods.rise import RISE, rise
from captum_topgap.methods.smooth import Smoothed
from captum_topgap.methods.topgap_cam import TopGAPCAM, topgap_cam

__all__ = ["CAM", "ERF", "RISE", "ABNAttention", "AugmentedGradCAM", "DifferentiableGradCAM", "ExpansionCAM",
           "PerceptionVisualization", "PositiveGradCAM", "ReciproCAM", "Smoothed", "TopGAPCAM", "abn_attention",
           "augmented_cam", "class_activation_map", "erf", "erf_at", "expansion_cams", "grad_cam_maps",
           "perception_maps", "recipro_cam", "rise", "topgap_cam"]

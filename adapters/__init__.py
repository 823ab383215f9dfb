"""Thin glue between the torch-native cores of captum_topgap and Captum, pytorch-grad-cam and Foolbox."""

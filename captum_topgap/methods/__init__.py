"""Torch-native cores of the plugin's own methods; the adapters wrap them for Captum and pytorch-grad-cam."""

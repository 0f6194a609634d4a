"""Datasets, conversion to FFCV ``.beton``, loaders and augmentations."""

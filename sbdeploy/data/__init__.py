"""Data sources for training, calibration and validation.

``open_source("digits" | "synthetic" | "cifar10:PATH" | "cifar100:PATH" | "imagefolder:PATH" | PATH)``
returns an :class:`ImageData` with train and test splits; one module per source.
"""

from sbdeploy.data.source import SOURCE_HELP, ImageData, open_source, to_float

__all__ = ["SOURCE_HELP", "ImageData", "open_source", "to_float"]

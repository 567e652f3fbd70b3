"""Data sources for training, calibration and validation: ``open_source(SOURCE)`` -> :class:`ImageData`.

The names below are imported on first use (they need torch; :data:`SOURCE_HELP` does not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sbdeploy._lazy import lazy_exports

SOURCE_HELP = (
    "digits | synthetic | cifar10:PATH | cifar100:PATH | imagefolder:PATH | PATH (auto-detected CIFAR or image folder)"
)

__getattr__, __dir__ = lazy_exports(
    __name__, dict.fromkeys(("ImageData", "open_source", "to_float"), "sbdeploy.data.source")
)

if TYPE_CHECKING:
    from sbdeploy.data.source import ImageData, open_source, to_float

__all__ = ["SOURCE_HELP", "ImageData", "open_source", "to_float"]

"""sbdeploy: spatial-bottleneck networks from PyTorch training code to verified inference engines.

Public entry points: :func:`create_model`, :func:`list_models`, :func:`load_checkpoint`, :func:`sbify`
(a trained baseline -> its SB network), and the :class:`~sbdeploy.nn.SpatialBottleneck` operator.
They are imported on first use, so that ``import sbdeploy`` and ``sbdeploy --help`` do not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sbdeploy._lazy import lazy_exports
from sbdeploy._version import __version__

_EXPORTS = {
    "SpatialBottleneck": "sbdeploy.nn",
    "create_model": "sbdeploy.models",
    "list_models": "sbdeploy.models",
    "load_checkpoint": "sbdeploy.checkpoint",
    "sbify": "sbdeploy.convert",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from sbdeploy.checkpoint import load_checkpoint
    from sbdeploy.convert import sbify
    from sbdeploy.models import create_model, list_models
    from sbdeploy.nn import SpatialBottleneck

__all__ = ["SpatialBottleneck", "__version__", "create_model", "list_models", "load_checkpoint", "sbify"]

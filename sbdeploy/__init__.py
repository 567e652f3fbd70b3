"""sbdeploy: spatial-bottleneck networks from PyTorch training code to verified inference engines.

Public entry points: :func:`create_model`, :func:`list_models`, :func:`load_checkpoint`, :func:`sbify`
(a trained baseline -> its SB network), and the :class:`~sbdeploy.nn.SpatialBottleneck` operator.
"""

from sbdeploy.checkpoint import load_checkpoint
from sbdeploy.convert import sbify
from sbdeploy.models import create_model, list_models
from sbdeploy.nn import SpatialBottleneck

__version__ = "0.1.0"

__all__ = ["SpatialBottleneck", "__version__", "create_model", "list_models", "load_checkpoint", "sbify"]

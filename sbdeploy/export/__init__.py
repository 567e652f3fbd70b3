"""Torch -> ONNX export of sbdeploy networks (deploy-target forms, graph passes, metadata, checks).

The names below are imported on first use, so that reading an ONNX file
(:mod:`sbdeploy.export.metadata`: ``sbdeploy check``, ``triton-repo``) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sbdeploy._lazy import lazy_exports

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ExportResult",
    "ModelSource",
    "export_module",
    "export_onnx",
    "export_source",
    "load_onnx",
    "read_metadata",
    "resolve_source",
]
_IN_METADATA = ("load_onnx", "read_metadata")
__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"sbdeploy.export.{'metadata' if name in _IN_METADATA else 'onnx_export'}" for name in __all__}
)

if TYPE_CHECKING:
    from sbdeploy.export.metadata import load_onnx, read_metadata
    from sbdeploy.export.onnx_export import (
        INPUT_NAME,
        OUTPUT_NAME,
        ExportResult,
        ModelSource,
        export_module,
        export_onnx,
        export_source,
        resolve_source,
    )

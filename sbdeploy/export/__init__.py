"""Torch -> ONNX export of sbdeploy networks (deploy-target forms, graph passes, metadata, checks)."""

from sbdeploy.export.metadata import load_onnx, read_metadata
from sbdeploy.export.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    ExportResult,
    export_module,
    export_onnx,
    export_source,
)

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ExportResult",
    "export_module",
    "export_onnx",
    "export_source",
    "load_onnx",
    "read_metadata",
]

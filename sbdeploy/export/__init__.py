"""Torch -> ONNX export of sbdeploy networks (SB lowerings, graph passes, metadata, checks)."""

from sbdeploy.export.metadata import load_onnx, read_metadata
from sbdeploy.export.onnx_export import (
    EXPORT_LOWERINGS,
    EXPORT_TARGETS,
    INPUT_NAME,
    OUTPUT_NAME,
    ExportResult,
    export_module,
    export_onnx,
    resolve_source,
    target_lowering,
)

__all__ = [
    "EXPORT_LOWERINGS",
    "EXPORT_TARGETS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ExportResult",
    "export_module",
    "export_onnx",
    "load_onnx",
    "read_metadata",
    "resolve_source",
    "target_lowering",
]

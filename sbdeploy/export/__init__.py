"""Torch -> ONNX export of sbdeploy networks (deploy-target forms, graph passes, metadata, checks).

The names load on first use, so reading an ONNX file's metadata (:mod:`.metadata`) imports no torch.
"""

from sbdeploy._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("load_onnx", "read_metadata"), "sbdeploy.export.metadata"),
    **dict.fromkeys(
        ("INPUT_NAME", "OUTPUT_NAME", "ExportResult", "ModelSource", "export_module", "export_onnx", "export_source"),
        "sbdeploy.export.onnx_export",
    ),
    "resolve_source": "sbdeploy.export.onnx_export",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

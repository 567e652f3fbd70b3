"""Shape inference: annotate every intermediate tensor with its type and shape (onnx's own)."""

from __future__ import annotations

import onnx


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Run onnx's strict shape inference with data propagation; raises on inconsistencies."""
    return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)

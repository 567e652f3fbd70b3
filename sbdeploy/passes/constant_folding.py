"""Constant folding: every subgraph whose inputs are constants becomes one initializer.

Uses onnxscript's optimizer (``fold_constants``), with ONNX shape inference so that
``Shape -> Gather -> ...`` chains on static dimensions fold too; the size limits are
lifted because the SB lowerings' repeated weights (``Tile`` of W1/W2) must fold.
"""

from __future__ import annotations

import onnx

_NO_LIMIT = 1 << 40


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constant subgraphs into initializers and drop what became unused."""
    import onnx_ir as ir
    from onnx_ir.passes.common import RemoveUnusedNodesPass
    from onnxscript.optimizer import fold_constants as _fold

    model_ir = ir.serde.deserialize_model(model)
    _fold(model_ir, onnx_shape_inference=True, input_size_limit=_NO_LIMIT, output_size_limit=_NO_LIMIT)
    RemoveUnusedNodesPass()(model_ir)
    return ir.serde.serialize_model(model_ir)

"""fp16 pass: weights and compute in float16, graph inputs and outputs kept float32.

Uses onnxruntime's float16 converter with ``keep_io_types=True`` (Casts at the graph boundary), then sorts the graph
again: the converter appends its input Casts after the nodes that read them.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

DEFAULT_FP32_OPS: tuple[str, ...] = ("ReduceMean", "GlobalAveragePool", "Softmax", "LogSoftmax")
"""Reductions and softmax keep float32 by default: long sums are where fp16 loses the most."""


def to_fp16(model: onnx.ModelProto, *, keep_fp32_ops: Sequence[str] = DEFAULT_FP32_OPS) -> onnx.ModelProto:
    """Return a float16 copy of the float32 ``model`` whose inputs, outputs and ``keep_fp32_ops`` stay float32."""
    import onnx_ir as ir
    from onnx_ir.passes.common import TopologicalSortPass
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(
        onnx.ModelProto.FromString(model.SerializeToString()),
        keep_io_types=True,
        op_block_list=list(keep_fp32_ops),
        disable_shape_infer=False,
    )
    model_ir = ir.serde.deserialize_model(converted)
    TopologicalSortPass()(model_ir)
    return ir.serde.serialize_model(model_ir)

"""BatchNorm folding: into the preceding Conv / ConvTranspose / Gemm where exact, else to Mul + Add.

Folding uses onnxscript's ``fuse_batchnorm`` rules; every other BatchNormalization (e.g. the pre-activation BN after
a residual add) becomes ``Mul(x, scale) + shift`` with constant ``[C, 1, 1]`` tensors, so none is left.
"""

from __future__ import annotations

import numpy as np
import onnx


def _bn_to_affine(model_ir) -> None:  # noqa: ANN001  (onnx_ir.Model)
    """Rewrite, in place, inference BatchNormalization nodes with constant parameters as Mul + Add."""
    import onnx_ir as ir

    graph = model_ir.graph
    for node in list(graph):
        if node.op_type != "BatchNormalization" or node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
            continue
        params = [None if v is None or v.const_value is None else v.const_value.numpy() for v in node.inputs[1:5]]
        rank = node.inputs[0].shape.rank() if node.inputs[0].shape is not None else None
        training = node.attributes.get("training_mode")
        if any(p is None for p in params) or rank is None or (training is not None and training.as_int()):
            continue
        gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
        eps = node.attributes["epsilon"].as_float() if "epsilon" in node.attributes else 1e-5
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        dtype = np.asarray(params[0]).dtype
        bshape = (-1,) + (1,) * (rank - 2)
        s, t = (
            ir.Value(name=name, const_value=ir.tensor(v.astype(dtype).reshape(bshape), name=name))
            for name, v in ((f"{node.name}_scale", scale), (f"{node.name}_shift", shift))
        )
        graph.register_initializer(s)
        graph.register_initializer(t)
        mul = ir.Node("", "Mul", [node.inputs[0], s], name=f"{node.name}_mul")
        add = ir.Node("", "Add", [mul.outputs[0], t], name=f"{node.name}_add")
        for v in (mul.outputs[0], add.outputs[0]):
            v.shape, v.type = node.outputs[0].shape, node.outputs[0].type
        ir.convenience.replace_nodes_and_values(graph, node, [node], [mul, add], [node.outputs[0]], [add.outputs[0]])


def fold_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold BN into the producing Conv/ConvTranspose/Gemm where exact; the rest becomes Mul + Add."""
    import onnx_ir as ir
    from onnx_ir.passes.common import RemoveUnusedNodesPass
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.rules.common import (
        fuse_batchnorm_into_conv_rule,
        fuse_batchnorm_into_conv_transpose_rule,
        fuse_batchnorm_into_gemm_rule,
    )

    # the affine rewrite needs each BN input's rank: lenient onnx shape inference first
    model_ir = ir.serde.deserialize_model(onnx.shape_inference.infer_shapes(model, strict_mode=False))
    model_ir = rewrite(
        model_ir,
        pattern_rewrite_rules=[
            fuse_batchnorm_into_conv_rule,
            fuse_batchnorm_into_conv_transpose_rule,
            fuse_batchnorm_into_gemm_rule,
        ],
    )
    _bn_to_affine(model_ir)
    RemoveUnusedNodesPass()(model_ir)
    return ir.serde.serialize_model(model_ir)

"""Constant folding: every subgraph whose inputs are constants becomes one initializer, except weight views.

Uses onnxscript's optimizer with ONNX shape inference and no size limits. *Weight views* (nodes that only turn stored
weights into Conv/ConvTranspose weights, :func:`weight_views`) stay, so the file stores each weight once; ONNX Runtime
folds them when it loads the session, TensorRT and int8 get them folded (:func:`materialize_weights`; docs/export.md).
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

_NO_LIMIT = 1 << 40
_WEIGHT_INPUTS = {"Conv": 1, "ConvTranspose": 1}
"""The input of each op type that holds its weights."""
VIEW_OPS = frozenset({"Tile", "Expand", "Concat", "Slice"})
"""The op types a weight view is made of: no more bytes than the weights they read (a GatherND's index tensors can be
larger than the taps it computes, so it folds)."""


def weight_views(model_ir) -> set:  # noqa: ANN001  (onnx_ir.Model -> set of onnx_ir.Node)
    """The :data:`VIEW_OPS` nodes of constant inputs whose every use is a Conv/ConvTranspose weight input or another
    such node (graph outputs never are)."""
    graph = model_ir.graph
    outputs = set(graph.outputs)

    def constant(value) -> bool:  # noqa: ANN001
        if value is None or value.const_value is not None or value.is_initializer():
            return True
        producer = value.producer()
        return producer is not None and (producer.op_type == "Constant" or producer in cone)

    cone: set = set()
    nodes = list(graph)
    for node in nodes:  # graph order is topological
        if node.op_type != "Constant" and node.inputs and all(constant(v) for v in node.inputs):
            cone.add(node)
    views: set = set()
    for node in reversed(nodes):
        if node not in cone or any(v in outputs for v in node.outputs):
            continue
        uses = [use for v in node.outputs for use in v.uses()]
        weights_only = all(_WEIGHT_INPUTS.get(user.op_type) == index or user in views for user, index in uses)
        if node.op_type in VIEW_OPS and uses and weights_only:
            views.add(node)
    return views


def _fold(model_ir, should_fold: Callable[[object], bool | None], **options: bool) -> onnx.ModelProto:  # noqa: ANN001
    """onnxscript's constant folding of ``model_ir`` (an onnx_ir Model) without size limits, then unused nodes dropped."""
    import onnx_ir as ir
    from onnx_ir.passes.common import RemoveUnusedNodesPass
    from onnxscript.optimizer import fold_constants as fold

    fold(model_ir, input_size_limit=_NO_LIMIT, output_size_limit=_NO_LIMIT, should_fold=should_fold, **options)
    RemoveUnusedNodesPass()(model_ir)
    return ir.serde.serialize_model(model_ir)


def fold_constants(model: onnx.ModelProto, *, keep_weight_views: bool = True) -> onnx.ModelProto:
    """Fold constant subgraphs into initializers and drop what became unused; weight views stay (see the module doc)."""
    import onnx_ir as ir

    model_ir = ir.serde.deserialize_model(model)
    kept = weight_views(model_ir) if keep_weight_views else set()
    return _fold(model_ir, lambda node: False if node in kept else None, onnx_shape_inference=True)


def materialize_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its weight views folded, and nothing else: every Conv/ConvTranspose weight computed from
    stored weights becomes an initializer (what TensorRT's builder and weight quantization expect)."""
    import onnx_ir as ir

    model_ir = ir.serde.deserialize_model(model)
    views = weight_views(model_ir)
    return _fold(model_ir, lambda node: node in views) if views else model

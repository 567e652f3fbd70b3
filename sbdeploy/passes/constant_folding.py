"""Constant folding: every subgraph whose inputs are constants becomes one initializer, except weight views.

Uses onnxscript's optimizer (``fold_constants``), with ONNX shape inference so that
``Shape -> Gather -> ...`` chains on static dimensions fold too; the size limits are
lifted so that any constant subgraph can fold.

*Weight views* stay in the graph (``keep_weight_views``, the default): the ``Tile``, ``Expand``,
``Concat`` and ``Slice`` nodes that only turn stored weights into the weights of Conv/ConvTranspose
nodes (the grouped SB form's ``Tile`` of W1 and W2, one copy per subgroup). Folded, each view would be one more stored
copy of the weight (the grouped ``resnet18_sb`` file was 2x its weights); kept, the file
stores each weight once and ONNX Runtime folds the views when it loads the session (its
basic graph optimizations), before its layout transformations. TensorRT builds from a
folded copy (:func:`materialize_weights`, as ``polygraphy surgeon sanitize --fold-constants``),
and int8 quantization quantizes the folded weights. :func:`weight_views` names the nodes.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

_NO_LIMIT = 1 << 40
_WEIGHT_INPUTS = {"Conv": 1, "ConvTranspose": 1}
"""The input of each op type that holds its weights."""
VIEW_OPS = frozenset({"Tile", "Expand", "Concat", "Slice"})
"""The op types a weight view is made of: repeats, concatenations and slices of stored weights, which hold no more
bytes than the weights they read. Other constant subgraphs fold (a GatherND of padded weights, as the ort-cpu form's
exact taps are traced, would keep index tensors larger than the taps it computes)."""


def weight_views(model_ir) -> set:  # noqa: ANN001  (onnx_ir.Model -> set of onnx_ir.Node)
    """The nodes that compute nothing but Conv/ConvTranspose weights from constants.

    A node is one when its op is one of :data:`VIEW_OPS`, every input is a constant (an
    initializer, a ``Constant`` node or the output of a node whose inputs are all constants)
    and every use of its outputs is the weight input of a Conv or ConvTranspose, or another
    such node; graph outputs never are.
    """
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

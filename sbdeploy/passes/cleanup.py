"""Dead-node and identity elimination, Slice clean-up, Constant nodes lifted to initializers.

onnx-ir's common passes and onnxscript's no-op ``Slice`` rules, plus one rewrite of our own: the torch exporter writes
``x[:, :, a:b, c:d]`` as one ``Slice`` per axis, and two chained constant Slices on different axes become one.
"""

from __future__ import annotations

import numpy as np
import onnx


def _const(value) -> np.ndarray | None:  # noqa: ANN001  (an onnx_ir Value or None)
    if value is None or value.const_value is None:
        return None
    return np.asarray(value.const_value.numpy())


def _slice_parts(node) -> tuple[np.ndarray, ...] | None:  # noqa: ANN001
    """(starts, ends, axes, steps) of a Slice whose parameters are all constant, else None."""
    inputs = list(node.inputs) + [None] * (5 - len(node.inputs))
    starts, ends = _const(inputs[1]), _const(inputs[2])
    if starts is None or ends is None:
        return None
    axes = _const(inputs[3]) if inputs[3] is not None else np.arange(len(starts), dtype=np.int64)
    steps = _const(inputs[4]) if inputs[4] is not None else np.ones(len(starts), dtype=np.int64)
    if axes is None or steps is None:
        return None
    return starts.astype(np.int64), ends.astype(np.int64), axes.astype(np.int64), steps.astype(np.int64)


def merge_slices(model_ir) -> int:  # noqa: ANN001  (onnx_ir.Model)
    """Merge chained constant Slices on disjoint, non-negative axes; returns how many were merged."""
    import onnx_ir as ir

    merged = 0
    graph = model_ir.graph
    for node in list(graph):
        if node.op_type != "Slice" or node.domain not in ("", "ai.onnx") or node.graph is None:
            continue
        first = node.inputs[0].producer() if node.inputs[0] is not None else None
        if first is None or first.op_type != "Slice" or first.domain not in ("", "ai.onnx"):
            continue
        if len(first.outputs[0].uses()) != 1 or first.outputs[0].is_graph_output():
            continue
        outer, inner = _slice_parts(first), _slice_parts(node)
        if outer is None or inner is None or (outer[2] < 0).any() or (inner[2] < 0).any():
            continue
        if set(outer[2].tolist()) & set(inner[2].tolist()):
            continue
        params = [np.concatenate([a, b]) for a, b in zip(outer, inner)]
        names = ("starts", "ends", "axes", "steps")
        consts = [
            ir.Value(name=f"{node.name}_{n}", const_value=ir.tensor(p, name=f"{node.name}_{n}"))
            for n, p in zip(names, params)
        ]
        for value in consts:
            graph.register_initializer(value)
        new = ir.Node("", "Slice", [first.inputs[0], *consts], name=node.name, num_outputs=1)
        new.outputs[0].shape, new.outputs[0].type = node.outputs[0].shape, node.outputs[0].type
        ir.convenience.replace_nodes_and_values(graph, node, [first, node], [new], [node.outputs[0]], [new.outputs[0]])
        merged += 1
    return merged


def eliminate(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove Identity nodes, no-op Slices and nodes whose outputs nobody reads; merge Slices."""
    import onnx_ir as ir
    from onnx_ir.passes.common import (
        IdentityEliminationPass,
        LiftConstantsToInitializersPass,
        RemoveUnusedNodesPass,
        RemoveUnusedOpsetsPass,
    )
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.rules.common import collapse_slice2_rule, collapse_slice_rule

    model_ir = ir.serde.deserialize_model(model)
    IdentityEliminationPass()(model_ir)
    model_ir = rewrite(model_ir, pattern_rewrite_rules=[collapse_slice_rule, collapse_slice2_rule])
    merge_slices(model_ir)
    LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model_ir)
    RemoveUnusedNodesPass()(model_ir)
    RemoveUnusedOpsetsPass()(model_ir)
    return ir.serde.serialize_model(model_ir)

"""ONNX pass: per-channel affine maps (``Mul`` by then ``Add`` of ``[C, 1, 1]`` constants) as depthwise 1x1 Convs.

The BN that ``fold_bn`` cannot fold becomes ``Mul + Add``, whose ``Add`` breaks ONNX Runtime's NCHWc chains; the
same map as a depthwise 1x1 ``Conv`` is fused like any other Conv (docs/speedup.md). Only 4-D inputs are rewritten.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sbdeploy.passes._base import consumers


def _rank(graph: onnx.GraphProto, name: str) -> int | None:
    for value in (*graph.value_info, *graph.input, *graph.output):
        if value.name == name and value.type.tensor_type.HasField("shape"):
            return len(value.type.tensor_type.shape.dim)
    return None


def affine_to_conv(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of ``model`` with each ``Add(Mul(x, s), t)`` over channels as one depthwise Conv."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    readers = consumers(graph)
    outputs = {o.name for o in graph.output}

    def channel_const(name: str) -> np.ndarray | None:
        if name not in inits:
            return None
        value = numpy_helper.to_array(inits[name])
        ok = value.ndim == 3 and value.shape[1:] == (1, 1) and value.dtype == np.float32
        return value if ok else None

    new_nodes: list[onnx.NodeProto] = []
    dropped: set[int] = set()
    for node in graph.node:
        if id(node) in dropped:
            continue
        if node.op_type == "Mul" and node.output[0] not in outputs:
            users = readers.get(node.output[0], [])
            scale = channel_const(node.input[1])
            if scale is not None and len(users) == 1 and users[0].op_type == "Add" and _rank(graph, node.input[0]) == 4:
                add = users[0]
                other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
                shift = channel_const(other)
                if shift is not None and shift.shape == scale.shape and list(add.input).count(node.output[0]) == 1:
                    channels = scale.shape[0]
                    w = numpy_helper.from_array(
                        scale.reshape(channels, 1, 1, 1), f"{node.name or node.output[0]}_dw_weight"
                    )
                    b = numpy_helper.from_array(shift.reshape(channels), f"{node.name or node.output[0]}_dw_bias")
                    graph.initializer.extend([w, b])
                    new_nodes.append(
                        helper.make_node(
                            "Conv",
                            [node.input[0], w.name, b.name],
                            [add.output[0]],
                            name=f"{add.name or add.output[0]}_dw",
                            group=channels,
                            kernel_shape=[1, 1],
                        )
                    )
                    dropped.add(id(add))
                    continue
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for n in graph.node for name in n.input}
    keep = [t for t in graph.initializer if t.name in used or t.name in {i.name for i in graph.input}]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return out

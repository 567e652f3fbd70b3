"""ONNX pass: a block's residual Add and final ReLU into the fused SB node (``SBConv``) that feeds them.

An ``SBConv`` output read only by an ``Add`` whose other operand has the output's own shape (no
broadcasting) takes that operand as its residual input ``R``; when the sum is read only by a ``Relu``,
the node's ``relu`` attribute replaces it. The kernel applies both in registers before it stores the
output: two nodes, and two passes over the activations, fewer per block.
"""

from __future__ import annotations

import onnx

from sbdeploy.kernels import DOMAIN, OP_TYPE
from sbdeploy.passes._base import consumers

_RESIDUAL = 5  # SBConv's inputs: X, W1, b1, W2, b2, R


def _shapes(graph: onnx.GraphProto) -> dict[str, tuple[int | str, ...]]:
    """Shapes of the graph's typed tensors whose every dim is a number or a named symbol (shape inference ran)."""
    shapes = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]
        if dims and all(d != "" for d in dims):
            shapes[value.name] = tuple(dims)
    return shapes


def _only_reader(name: str, readers: dict[str, list[onnx.NodeProto]], outputs: set[str], op_type: str):
    users = readers.get(name, [])
    if name in outputs or len(users) != 1 or users[0].op_type != op_type or users[0].domain not in ("", "ai.onnx"):
        return None
    return users[0]


def fuse_sb(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of ``model`` with each ``SBConv -> Add [-> Relu]`` chain as one ``SBConv``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    shapes, readers = _shapes(graph), consumers(graph)
    outputs = {o.name for o in graph.output}
    fused_at: dict[int, onnx.NodeProto] = {}  # id of the Add a node replaces -> the node (it moves there)
    removed: set[int] = set()
    for node in graph.node:
        if node.op_type != OP_TYPE or node.domain != DOMAIN or len(node.input) > _RESIDUAL:
            continue
        add = _only_reader(node.output[0], readers, outputs, "Add")
        if add is None or add.input[0] == add.input[1]:
            continue
        residual = add.input[1] if add.input[0] == node.output[0] else add.input[0]
        if node.output[0] not in shapes or shapes.get(residual) != shapes[node.output[0]]:
            continue
        node.input.extend([""] * (_RESIDUAL - len(node.input)) + [residual])
        node.output[0] = add.output[0]
        fused_at[id(add)] = node
        removed.add(id(node))
        relu = _only_reader(add.output[0], readers, outputs, "Relu")
        if relu is not None:
            node.attribute.append(onnx.helper.make_attribute("relu", 1))
            node.output[0] = relu.output[0]
            removed.add(id(relu))
    nodes = [fused_at.get(id(n), n) for n in graph.node if id(n) not in removed]  # R is computed before the Add
    del graph.node[:]
    graph.node.extend(nodes)
    return out

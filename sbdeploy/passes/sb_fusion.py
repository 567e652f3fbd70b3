"""ONNX pass: what a block does around its fused SB node (``SBConv``) into the node.

Before it, a pre-activation: ``Mul`` and ``Add`` by per-channel constants (a BN that no convolution
precedes) and a ``Relu``, each read only by the next, become ``in_scale``/``in_shift``/``in_relu``, applied
as the kernel copies its input. After it, an ``Add`` whose other operand has the output's own shape (no
broadcasting) becomes the residual input ``R``, and a ``Relu`` reading only that sum the ``relu``
attribute, applied before the store. A pre-activation block becomes one node instead of five.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

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


def _per_channel(node: onnx.NodeProto, data: str, constants: dict[str, np.ndarray], channels: int):
    """The per-channel operand of a Mul/Add whose other input is ``data``, as ``channels`` floats; None otherwise."""
    other = node.input[1] if node.input[0] == data else node.input[0]
    value = constants.get(other)
    if value is None or value.dtype != np.float32 or value.size != channels:
        return None
    if value.shape not in ((channels, 1, 1), (1, channels, 1, 1)):
        return None
    return [float(v) for v in value.reshape(-1)]


def _fuse_prologue(node: onnx.NodeProto, producers, readers, constants, outputs, shapes) -> list[onnx.NodeProto]:
    """Fold the ``[Mul] [Add] [Relu]`` chain feeding ``node``'s X into its ``in_*`` attributes; the nodes it replaces."""
    channels = int(constants[node.input[1]].shape[1]) if node.input[1] in constants else 0
    attributes, taken = {}, []
    for op_type, attribute in (("Relu", "in_relu"), ("Add", "in_shift"), ("Mul", "in_scale")):
        source = producers.get(node.input[0])
        if source is None or source.op_type != op_type or source.domain not in ("", "ai.onnx"):
            continue
        users = readers.get(source.output[0], [])
        if source.output[0] in outputs or len(users) != 1 or users[0] is not (taken[-1] if taken else node):
            break
        if op_type == "Relu":
            attributes[attribute], data = 1, source.input[0]
        else:
            data = next((i for i in source.input if i not in constants), None)
            values = None if data is None else _per_channel(source, data, constants, channels)
            if values is None or shapes.get(data) is None or shapes.get(data) != shapes.get(source.output[0]):
                break  # not a per-channel affine of X's own shape (a broadcasting operand would change X)
            attributes[attribute] = values
        taken.append(source)
        node.input[0] = data
    if "in_scale" in attributes and "in_shift" not in attributes:
        attributes["in_shift"] = [0.0] * channels
    if "in_shift" in attributes and "in_scale" not in attributes:
        attributes["in_scale"] = [1.0] * channels
    node.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in attributes.items())
    return taken


def fuse_sb(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of ``model`` with each ``[Mul] [Add] [Relu] -> SBConv -> [Add [-> Relu]]`` chain as one ``SBConv``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    shapes, readers = _shapes(graph), consumers(graph)
    outputs = {o.name for o in graph.output}
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}  # the nodes stay until every chain is taken
    prologue: set[int] = set()
    for node in graph.node:
        if (
            node.op_type == OP_TYPE
            and node.domain == DOMAIN
            and not any(a.name.startswith("in_") for a in node.attribute)
        ):
            prologue |= {id(n) for n in _fuse_prologue(node, producers, readers, constants, outputs, shapes)}
    graph_nodes = [n for n in graph.node if id(n) not in prologue]
    del graph.node[:]
    graph.node.extend(graph_nodes)
    readers = consumers(graph)
    fused_at: dict[int, onnx.NodeProto] = {}  # id of the Add a node replaces -> the node (it moves there)
    removed: set[int] = set()
    for node in graph.node:
        if node.op_type != OP_TYPE or node.domain != DOMAIN or len(node.input) > _RESIDUAL:
            continue
        add = _only_reader(node.output[0], readers, outputs, "Add")
        if add is None or add.input[0] == add.input[1] or id(add) in fused_at:  # an Add of two SBs: one takes it
            continue
        if any(a.name == "relu" for a in node.attribute):  # relu(SB) + R is not relu(SB + R)
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

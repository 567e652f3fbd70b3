"""ONNX pass: fold zero-padding ``Pad`` nodes into the ``pads`` of the Conv nodes they feed.

The deploy lowerings write each tap convolution as ``F.pad`` then ``conv2d``, and every Pad ONNX Runtime leaves breaks
its NCHWc chains. A constant zero Pad of the spatial axes only, read only as the data input of Convs without
``auto_pad``, is folded.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from sbdeploy.passes._base import consumers


def _constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    values = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = node.attribute[0].t
    return values


def _pad_amounts(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> list[int] | None:
    """Spatial pads ``[top, left, bottom, right]`` of a foldable 4-D zero Pad, else None."""
    attrs = {a.name: a for a in node.attribute}
    if "mode" in attrs and attrs["mode"].s not in (b"constant", b""):
        return None
    if "pads" in attrs:  # opset < 11
        pads = list(attrs["pads"].ints)
        if "value" in attrs and attrs["value"].f != 0.0:
            return None
    else:
        if len(node.input) < 2 or node.input[1] not in constants:
            return None
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in constants or numpy_helper.to_array(constants[node.input[2]]).any():
                return None
        if len(node.input) > 3 and node.input[3]:  # explicit axes: keep it simple, skip
            return None
        pads = [int(v) for v in numpy_helper.to_array(constants[node.input[1]]).reshape(-1)]
    if len(pads) != 8 or any(p < 0 for p in pads) or pads[0] or pads[1] or pads[4] or pads[5]:
        return None
    return [pads[2], pads[3], pads[6], pads[7]]


def fuse_pads(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of ``model`` with foldable Pad -> Conv pairs merged."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    constants = _constants(graph)
    readers = consumers(graph)
    graph_outputs = {o.name for o in graph.output}
    removed = []
    for node in graph.node:
        if node.op_type != "Pad" or node.output[0] in graph_outputs:
            continue
        spatial = _pad_amounts(node, constants)
        users = readers.get(node.output[0], [])
        if spatial is None or not users:
            continue
        if not all(
            u.op_type == "Conv"
            and u.input[0] == node.output[0]
            and u.input[1:].count(node.output[0]) == 0
            and all(a.name != "auto_pad" or a.s in (b"NOTSET", b"") for a in u.attribute)
            for u in users
        ):
            continue
        for user in users:
            attrs = {a.name: a for a in user.attribute}
            if "pads" in attrs:
                old = list(attrs["pads"].ints)
                user.attribute.remove(attrs["pads"])
            else:
                old = [0, 0, 0, 0]
            user.attribute.append(onnx.helper.make_attribute("pads", [o + s for o, s in zip(old, spatial)]))
            user.input[0] = node.input[0]
        removed.append(node)
    for node in removed:
        graph.node.remove(node)
    return out

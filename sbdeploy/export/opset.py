"""Down-conversion of an exported graph from opset 18 (the torch exporter's minimum) to 13-17.

onnx's own converter lacks the 18 -> 17 ``Pad``/``Split`` adapters, so the ops sbdeploy's graphs use are converted
here; anything else is refused, and the result is checked by ``onnx.checker`` against the target opset.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sbdeploy.errors import ConfigError
from sbdeploy.passes._base import drop_stale_value_info

_TYPE_ONLY_CHANGES = frozenset(
    {"Add", "Sub", "Mul", "Div", "Relu", "Identity", "BatchNormalization", "Sum", "Max", "Min", "Clip"}
)
_AXES_TO_ATTRIBUTE = frozenset(
    {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare"}
)


def _shape_of(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    return out


def downgrade_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """Return a copy of ``model`` (default-domain opset 18) rewritten for opset ``target`` (13-17)."""
    source = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if source is None or source == target:
        return model
    if source != 18 or not 13 <= target < 18:
        raise ConfigError(f"opset conversion {source} -> {target} is not supported; export with opset 18 or newer")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    shapes: dict[str, list[int | None]] | None = None
    new_initializers = []
    inserted: dict[int, onnx.NodeProto] = {}  # node index -> node to insert after it
    for index, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx"):
            continue
        since = onnx.defs.get_schema(node.op_type, 18, "").since_version
        if since <= target:
            continue
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Pad":
            if len(node.input) > 3 and node.input[3]:
                raise ConfigError(f"Pad {node.name} has an axes input, which opset {target} lacks; use opset 18")
        elif node.op_type == "Split" and "num_outputs" not in attrs:
            pass  # sizes given as the ``split`` input: the same as Split 13
        elif node.op_type == "Split":
            shapes = shapes if shapes is not None else _shape_of(model)
            axis = helper.get_attribute_value(attrs["axis"]) if "axis" in attrs else 0
            dims = shapes.get(node.input[0])
            size = dims[axis] if dims else None
            count = helper.get_attribute_value(attrs["num_outputs"])
            if size is None:
                raise ConfigError(
                    f"Split {node.name} splits a dynamic axis; opset {target} needs static sizes, use opset 18"
                )
            chunk = -(-size // count)
            sizes = np.array([min(chunk, size - i * chunk) for i in range(count)], dtype=np.int64)
            name = f"{node.name}_split_sizes"
            new_initializers.append(numpy_helper.from_array(sizes, name))
            node.attribute.remove(attrs["num_outputs"])
            node.input.append(name)
        elif node.op_type == "Reshape":
            if "allowzero" in attrs:
                shape = constants.get(node.input[1])
                if shape is not None and helper.get_attribute_value(attrs["allowzero"]) and (shape == 0).any():
                    raise ConfigError(f"Reshape {node.name} has a literal 0 in its shape (allowzero); use opset 18")
                node.attribute.remove(attrs["allowzero"])
        elif node.op_type == "Shape":
            start = helper.get_attribute_value(attrs["start"]) if "start" in attrs else 0
            end = helper.get_attribute_value(attrs["end"]) if "end" in attrs else None
            for name in ("start", "end"):
                if name in attrs:
                    node.attribute.remove(attrs[name])
            if start != 0 or end is not None:
                full, out = f"{node.output[0]}_full", node.output[0]
                node.output[0] = full
                params = [
                    np.array([start], np.int64),
                    np.array([end if end is not None else 2**62], np.int64),
                    np.array([0], np.int64),
                ]
                names = [f"{node.name}_{p}" for p in ("starts", "ends", "axes")]
                new_initializers.extend(numpy_helper.from_array(a, n) for a, n in zip(params, names))
                inserted[index] = helper.make_node("Slice", [full, *names], [out], name=f"{node.name}_slice")
        elif node.op_type in _AXES_TO_ATTRIBUTE:
            if "noop_with_empty_axes" in attrs:
                if helper.get_attribute_value(attrs["noop_with_empty_axes"]):
                    raise ConfigError(f"{node.op_type} {node.name} uses noop_with_empty_axes; use opset 18")
                node.attribute.remove(attrs["noop_with_empty_axes"])
            if len(node.input) > 1 and node.input[1]:
                if node.input[1] not in constants:
                    raise ConfigError(f"{node.op_type} {node.name} has run-time axes; use opset 18")
                axes = constants[node.input[1]].astype(np.int64).tolist()
                del node.input[1:]
                node.attribute.append(helper.make_attribute("axes", axes))
        elif node.op_type not in _TYPE_ONLY_CHANGES:
            raise ConfigError(
                f"{node.op_type} changed after opset {target} and sbdeploy cannot convert it; use opset 18"
            )
    if inserted:
        nodes = []
        for index, node in enumerate(model.graph.node):
            nodes.append(node)
            if index in inserted:
                nodes.append(inserted[index])
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    model.graph.initializer.extend(new_initializers)
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]  # e.g. Reduce axes now attributes
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    drop_stale_value_info(model)  # and their shape entries
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = target
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ConfigError(f"the graph does not convert to opset {target} ({error}); use opset 18") from None
    return model

"""sbdeploy's metadata in an ONNX file's ``metadata_props``: write and read back.

Each field is one ``metadata_props`` entry ``sbdeploy.<field>`` whose value is JSON, so
any ONNX tool shows it and :func:`read_metadata` restores the types.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from sbdeploy import kernels
from sbdeploy.errors import OnnxModelError

PREFIX = "sbdeploy."


def write_metadata(model: onnx.ModelProto, metadata: Mapping[str, Any]) -> None:
    """Replace the model's sbdeploy entries by ``metadata`` (other entries are kept), in key order."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
    for key in sorted(metadata):
        model.metadata_props.add(key=PREFIX + key, value=json.dumps(metadata[key], sort_keys=True))


def onnx_precision(model: onnx.ModelProto) -> str:
    """``int8`` with Q/DQ nodes, ``fp16`` with float16 weights, what its fused SB nodes compute in (their
    ``precision``: bf16, int8), else ``fp32``: what the graph computes in."""
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    for node in model.graph.node:
        if node.domain == kernels.DOMAIN and node.op_type == kernels.OP_TYPE:
            for attribute in node.attribute:
                if attribute.name == "precision" and attribute.s not in (b"fp32", b"bf16", b"int8"):
                    raise OnnxModelError(
                        f"{node.name or node.op_type}: precision {attribute.s!r} is not fp32, bf16 or int8"
                    )
                if attribute.name == "precision" and attribute.s != b"fp32":
                    return attribute.s.decode()
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def read_metadata(model_or_path: onnx.ModelProto | str | Path) -> dict[str, Any]:
    """sbdeploy's metadata of an ONNX model or file (OnnxModelError if unreadable); ``{}`` when sbdeploy did not export it."""
    model = model_or_path if isinstance(model_or_path, onnx.ModelProto) else load_onnx(model_or_path)
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key.startswith(PREFIX):
            try:
                out[prop.key[len(PREFIX) :]] = json.loads(prop.value)
            except json.JSONDecodeError:
                out[prop.key[len(PREFIX) :]] = prop.value
    return out


def load_onnx(path: str | Path, *, external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX file (its weights in other files too if ``external_data``); OnnxModelError when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path} does not exist; export one with `sbdeploy export`")
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except Exception as error:  # onnx raises protobuf DecodeError, ValueError, OSError...
        raise OnnxModelError(f"{path} is not a readable ONNX model ({type(error).__name__}: {error})") from None
    if model.ir_version == 0 or not model.graph.node:
        raise OnnxModelError(f"{path} is not an ONNX model (no IR version or no nodes); is it the right file?")
    return model

"""Precision pass: the fused SB nodes (``SBConv``) computing in bf16 or int8, the rest of the graph as it is (fp32).

The kernel library (``csrc/sbconv.cc``) reads a node's ``precision`` attribute; inputs, outputs and weights stay
fp32 in the file (the kernel rounds or quantizes its weights when it is created), so a bf16 or int8 node reads and
writes what its fp32 neighbours do. int8 also needs the u8 quantization of the node's two conv inputs: X after its
pre-activation (``in_scale``/``in_shift``/``in_relu``) and the sampled map between conv and transposed conv (after
``mid_scale``/``mid_shift``/``mid_relu``). Both come from MinMax calibration on the fused graph itself: ONNX
Runtime (the library registered) runs it with every node's X as an extra output, the pre-activation is applied
here, and the node's conv at the sampled positions gives the mid map's range. ONNX Runtime's own int8 calibrator
cannot do this: it opens a session of its own, which knows no custom op.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sbdeploy import kernels
from sbdeploy.errors import ConfigError, InputError

PRECISIONS = ("bf16", "int8")
"""What a fused SB node computes in besides fp32."""


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _set(node: onnx.NodeProto, **values: object) -> None:
    kept = [a for a in node.attribute if a.name not in values]
    del node.attribute[:]
    node.attribute.extend([*kept, *(helper.make_attribute(k, v) for k, v in values.items())])


def _u8(low: float, high: float) -> tuple[float, int]:
    """Scale and zero point of u8 over ``[low, high]`` widened to hold 0 (an all-zero range: scale 1)."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low <= 0 or not np.isfinite(high - low):
        return 1.0, 0
    scale = float(np.float32((high - low) / 255.0))
    return scale, int(np.clip(np.rint(-low / scale), 0, 255))


def _inputs(model: onnx.ModelProto, nodes: list[onnx.NodeProto], images: np.ndarray, batch: int) -> list[np.ndarray]:
    """Each node's X over ``images``, from one ONNX Runtime session of the fp32 graph with the X's as outputs."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        helper.make_empty_tensor_value_info(n.input[0]) for n in nodes if n.input[0] not in outputs
    )
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(kernels.library_path()))
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    wanted = [n.input[0] for n in nodes]
    runs = [session.run(wanted, {name: images[i : i + batch]}) for i in range(0, len(images) - batch + 1, batch)]
    return [np.concatenate([r[k] for r in runs]) for k in range(len(nodes))]


def _ranges(node: onnx.NodeProto, x: np.ndarray, constants: dict[str, np.ndarray]) -> tuple[tuple[float, float], ...]:
    """MinMax of ``node``'s X after its pre-activation, and of its sampled mid map."""
    import torch

    from sbdeploy.nn.sampling import sampling_mask

    a = _attributes(node)
    channels = x.shape[1]
    if "in_scale" in a:
        x = x * np.asarray(a["in_scale"], np.float32).reshape(1, channels, 1, 1)
    if "in_shift" in a:
        x = x + np.asarray(a["in_shift"], np.float32).reshape(1, channels, 1, 1)
    if a.get("in_relu"):
        x = np.maximum(x, 0)
    w1 = torch.tensor(constants[node.input[1]])
    b1 = torch.tensor(constants[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
    stride = int(a.get("stride", 1))
    mid = torch.nn.functional.conv2d(torch.from_numpy(np.ascontiguousarray(x)), w1, b1, stride=stride, padding=1)
    mid_channels = mid.shape[1]
    if "mid_scale" in a:
        mid = mid * torch.tensor(a["mid_scale"], dtype=torch.float32).reshape(1, mid_channels, 1, 1)
    if "mid_shift" in a:
        mid = mid + torch.tensor(a["mid_shift"], dtype=torch.float32).reshape(1, mid_channels, 1, 1)
    if a.get("mid_relu"):
        mid = torch.relu(mid)
    sampling = a.get("sampling", b"chessboard")
    if not isinstance(sampling, bytes):
        raise ConfigError(f"{node.name}: int8 calibration takes SBConv nodes with a named sampling, as export writes")
    kept = mid[:, :, sampling_mask(mid.shape[2], mid.shape[3], sampling.decode())]
    return (float(x.min()), float(x.max())), (float(kept.min()), float(kept.max()))


def sbconv_precision(
    model: onnx.ModelProto, precision: str, calibration: np.ndarray | None = None, *, batch_size: int = 32
) -> onnx.ModelProto:
    """``model`` (fp32, fused SB nodes) with every SBConv node computing in ``precision`` (bf16 or int8); int8 is
    calibrated on ``calibration`` (normalized ``[N, C, H, W]`` inputs), batches of at most ``batch_size``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"a fused SB node computes in fp32, {' or '.join(PRECISIONS)}, not {precision!r}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = [n for n in out.graph.node if n.domain == kernels.DOMAIN and n.op_type == kernels.OP_TYPE]
    if not nodes:
        raise ConfigError(f"{precision} SB files are the fused form's: this graph has no {kernels.OP_TYPE} node")
    if precision == "bf16":
        for node in nodes:
            _set(node, precision="bf16")
        return out
    if calibration is None or calibration.ndim != 4 or len(calibration) == 0:
        raise InputError("an int8 fused file needs calibration images, a non-empty [N, C, H, W] array")
    images = np.ascontiguousarray(calibration, dtype=np.float32)
    dims = out.graph.input[0].type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else min(batch_size, len(images))
    if len(images) < batch:
        raise InputError(f"the model's fixed batch is {batch}: give at least {batch} calibration images")
    constants = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    for node, x in zip(nodes, _inputs(out, nodes, images, batch)):
        (x_low, x_high), (m_low, m_high) = _ranges(node, x, constants)
        x_scale, x_zero = _u8(x_low, x_high)
        m_scale, m_zero = _u8(m_low, m_high)
        _set(node, precision="int8", x_scale=x_scale, x_zero_point=x_zero, m_scale=m_scale, m_zero_point=m_zero)
    return out

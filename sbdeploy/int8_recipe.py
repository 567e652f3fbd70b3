"""int8 recipes: how a float model becomes int8, as named data (:mod:`sbdeploy.targets` names one per target,
:func:`sbdeploy.passes.int8.quantize_int8` applies it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sbdeploy.errors import ConfigError

DEFAULT_INT8_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")

ORT_CPU_INT8_OPS: tuple[str, ...] = tuple(
    "Conv Gemm MatMul Add Relu MaxPool GlobalAveragePool Concat Reshape Unsqueeze Slice DepthToSpace".split()
)
"""Ops quantized for ONNX Runtime CPU: its int8 kernels and the data-movement ops between them; no ConvTranspose
(no int8 kernel on the CPU provider: docs/int8.md)."""


@dataclass(frozen=True)
class Int8Recipe:
    """How a float model becomes int8 (onnxruntime static quantization, MinMax calibration)."""

    name: str
    format: Literal["qdq", "qoperator"] = "qdq"  # Q/DQ pairs around float ops, or QLinearConv... written out
    per_channel: bool = True  # one weight scale per output channel (else one per tensor)
    activation_type: Literal["int8", "uint8"] = "int8"
    weight_type: Literal["int8", "uint8"] = "int8"
    activation_symmetric: bool = True
    weight_symmetric: bool = True
    reduce_range: bool = False  # 7-bit weights, for CPUs without VNNI (u8s8 multiply-add saturates in 16 bits)
    quantize_bias: bool = False  # int32 biases (scale = input scale x weight scale); else float
    op_types: tuple[str, ...] = DEFAULT_INT8_OPS

    def __post_init__(self) -> None:
        if self.format not in ("qdq", "qoperator"):
            raise ConfigError(f"int8 format must be 'qdq' or 'qoperator', got {self.format!r}")
        for kind in (self.activation_type, self.weight_type):
            if kind not in ("int8", "uint8"):
                raise ConfigError(f"int8 activation/weight type must be 'int8' or 'uint8', got {kind!r}")
        if not self.op_types:
            raise ConfigError("an int8 recipe needs at least one op type to quantize")

    def describe(self) -> str:
        """One line: ``qdq s8s8 per-channel symmetric, float bias, ops Conv/Gemm``."""
        types = f"{'s' if self.activation_type == 'int8' else 'u'}8{'s' if self.weight_type == 'int8' else 'u'}8"
        parts = [self.format, types, "per-channel" if self.per_channel else "per-tensor"]
        symmetric = self.activation_symmetric and self.weight_symmetric
        parts.append("symmetric" if symmetric else "symmetric weights" if self.weight_symmetric else "asymmetric")
        if self.reduce_range:
            parts.append("reduce_range")
        return f"{' '.join(parts)}, {'int32' if self.quantize_bias else 'float'} bias, ops {'/'.join(self.op_types)}"


TRT_INT8 = Int8Recipe(name="trt")
"""What TensorRT's explicit quantization takes: QDQ, symmetric s8s8 (zero point 0, which its Q/DQ need), per-channel,
float bias (its DequantizeLinear takes int8, not int32), Q/DQ only around the compute ops: the rest runs in float."""

ORT_CPU_INT8 = Int8Recipe(
    name="ort-cpu", activation_type="uint8", activation_symmetric=False, quantize_bias=True, op_types=ORT_CPU_INT8_OPS
)
"""ONNX Runtime CPU: QDQ, uint8 activations x int8 weights (per channel), int32 biases, :data:`ORT_CPU_INT8_OPS`: the
form measured fastest while passing the int8 gate (docs/int8.md)."""

INT8_RECIPES: dict[str, Int8Recipe] = {r.name: r for r in (TRT_INT8, ORT_CPU_INT8)}
"""Named recipes, for a deploy target to name."""

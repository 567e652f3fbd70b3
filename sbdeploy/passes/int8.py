"""int8 pass: explicit QuantizeLinear/DequantizeLinear (QDQ) nodes from calibration data.

Uses onnxruntime's static quantization (``quantize_static``, QDQ format, MinMax
calibration). The choices are the ones TensorRT's explicit-quantization mode accepts,
so one file runs on TensorRT 10/11 and on onnxruntime: signed int8 for activations
and weights, symmetric (zero point 0, which TensorRT's Q/DQ require), per-channel
weight scales, biases left in float (TensorRT's DequantizeLinear takes int8, not the
int32 of a quantized bias), and Q/DQ pairs only around the compute ops (Conv, ConvTranspose, Gemm,
MatMul) so every other op runs in float.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from sbdeploy.errors import InputError

DEFAULT_INT8_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _input_name(model: onnx.ModelProto) -> str:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise InputError(f"int8 calibration needs a model with one input; this one has {inputs}")
    return inputs[0]


def quantize_int8(
    model: onnx.ModelProto,
    calibration: np.ndarray,
    *,
    batch_size: int = 32,
    per_channel: bool = True,
    op_types: Sequence[str] = DEFAULT_INT8_OPS,
) -> onnx.ModelProto:
    """Quantize ``model`` to int8 QDQ form, calibrated on ``calibration``.

    Args:
        model: a float32 model with one input (NCHW).
        calibration: preprocessed (normalized) inputs ``[N, C, H, W]`` float32; a few
            hundred real images.
        batch_size: calibration batch size (the model must accept it: dynamic batch, or
            equal to the fixed batch).
        per_channel: per-output-channel weight scales.
        op_types: op types that get Q/DQ on their inputs.

    Weights the graph computes from stored ones (the grouped form's ``Tile`` of W) are folded
    first (:func:`sbdeploy.passes.constant_folding.materialize_weights`): each is quantized as
    a weight, per channel, as TensorRT's explicit quantization reads it.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from sbdeploy.passes.constant_folding import materialize_weights

    model = materialize_weights(model)
    name = _input_name(model)
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise InputError(f"calibration data must be a non-empty [N, C, H, W] array, got shape {calibration.shape}")
    dims = model.graph.input[[i.name for i in model.graph.input].index(name)].type.tensor_type.shape.dim
    if dims and dims[0].HasField("dim_value"):
        batch_size = dims[0].dim_value

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(
                calibration[i : i + batch_size] for i in range(0, len(calibration) - batch_size + 1, batch_size)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {name: batch}

    if len(calibration) < batch_size:
        raise InputError(f"need at least {batch_size} calibration images, got {len(calibration)}")
    with tempfile.TemporaryDirectory(prefix="sbdeploy-int8-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, source)
        quantize_static(
            str(source),
            str(target),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=list(op_types),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
        return onnx.load(target)

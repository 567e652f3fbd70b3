"""int8 pass: a quantized model from calibration data, by a named :class:`Int8Recipe` (:mod:`sbdeploy.int8_recipe`).

Uses onnxruntime's static quantization (``quantize_static``, MinMax calibration), each shared bias unshared first
(onnxruntime issue 24705: its own copy can make a cycle, docs/int8.md).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from sbdeploy.errors import InputError, OnnxModelError
from sbdeploy.int8_recipe import ORT_CPU_INT8, ORT_CPU_INT8_OPS, TRT_INT8, Int8Recipe  # noqa: F401  (re-exported)
from sbdeploy.passes.constant_folding import materialize_weights

_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}  # op type -> index of its bias input


def _input_name(model: onnx.ModelProto) -> str:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise InputError(f"int8 calibration needs a model with one input; this one has {inputs}")
    return inputs[0]


def unshare_biases(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` in which each further consumer of a shared Conv/ConvTranspose/Gemm bias gets its own copy,
    named ``<bias>.<n>`` with a name no tensor, initializer or value_info of the graph has."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    initializers = {i.name: i for i in graph.initializer}
    taken = set(initializers) | {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    taken |= {name for node in graph.node for name in (*node.input, *node.output)}
    seen: set[str] = set()
    for node in graph.node:
        index = _BIAS_INPUT.get(node.op_type)
        if index is None or len(node.input) <= index or node.input[index] not in initializers:
            continue
        bias = node.input[index]
        if bias not in seen:
            seen.add(bias)
            continue
        n = 1
        while f"{bias}.{n}" in taken:
            n += 1
        copy = onnx.TensorProto()
        copy.CopyFrom(initializers[bias])
        copy.name = f"{bias}.{n}"
        taken.add(copy.name)
        graph.initializer.append(copy)
        node.input[index] = copy.name
    return out


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs advice on the root logger; a library prints nothing."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(
    model: onnx.ModelProto, calibration: np.ndarray, *, recipe: Int8Recipe = TRT_INT8, batch_size: int = 32
) -> onnx.ModelProto:
    """Quantize ``model`` (float32, one NCHW input) to int8 by ``recipe``, calibrated on ``calibration`` (normalized
    ``[N, C, H, W]`` inputs) in batches of at most ``batch_size`` (a fixed-batch model: its own); weight views folded first."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = materialize_weights(model)
    name = _input_name(model)
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise InputError(f"calibration data must be a non-empty [N, C, H, W] array, got shape {calibration.shape}")
    dims = model.graph.input[[i.name for i in model.graph.input].index(name)].type.tensor_type.shape.dim
    if dims and dims[0].HasField("dim_value"):
        batch_size = dims[0].dim_value
        if len(calibration) < batch_size:
            raise InputError(
                f"the model's fixed batch is {batch_size}: give at least {batch_size} calibration images, got {len(calibration)}"
            )
    batch_size = max(1, min(batch_size, len(calibration)))

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(
                calibration[i : i + batch_size] for i in range(0, len(calibration) - batch_size + 1, batch_size)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {name: batch}

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    with tempfile.TemporaryDirectory(prefix="sbdeploy-int8-") as tmp, _quiet_quantizer():
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(unshare_biases(model), source)
        quantize_static(
            str(source),
            str(target),
            _Reader(),
            quant_format=QuantFormat.QDQ if recipe.format == "qdq" else QuantFormat.QOperator,
            activation_type=types[recipe.activation_type],
            weight_type=types[recipe.weight_type],
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            op_types_to_quantize=list(recipe.op_types),
            extra_options={
                "ActivationSymmetric": recipe.activation_symmetric,
                "WeightSymmetric": recipe.weight_symmetric,
                "QuantizeBias": recipe.quantize_bias,
            },
        )
        quantized = onnx.load(target)
    try:
        onnx.checker.check_model(quantized)
    except onnx.checker.ValidationError as error:
        raise OnnxModelError(f"the int8 model fails onnx.checker ({error}); please report this as a bug") from None
    return quantized

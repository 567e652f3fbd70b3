"""fp16 and int8 passes on a trained SB network, measured on real images (digits test split).

* fp16: float32 graph inputs/outputs kept, weights float16, the kept-fp32 op list honoured;
  top-1 agreement with fp32 on the 360 test images must be at least 99%.
* int8: explicit QuantizeLinear/DequantizeLinear nodes, symmetric (zero point 0, as
  TensorRT needs), calibrated on 256 training images; accuracy within 1 point of fp32.
  Both run in onnxruntime and pass the TensorRT support-list check.
* The ``ort-cpu:gather`` form (Gather + Gemm, no Conv in an SB): fp16 agrees with fp32 on 99% of
  the test images, the ONNX Runtime CPU int8 recipe quantizes every Gemm and keeps the accuracy.
The figures are printed (``pytest -s``) for the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from sbdeploy.checkpoint import read_config
from sbdeploy.export.onnx_export import export_onnx
from sbdeploy.passes import quantize_int8, to_fp16
from sbdeploy.passes.trt_check import check_trt_compat
from tests.passes.conftest import digits_inputs


@pytest.fixture(scope="module")
def exported(digits_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    config = read_config(digits_checkpoint)
    result = export_onnx(digits_checkpoint, tmp_path_factory.mktemp("digits") / "fp32.onnx")
    x_test, y_test = digits_inputs(config, "test")
    x_train, _ = digits_inputs(config, "train")
    return onnx.load(result.path), x_test, y_test, x_train


def predict(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[i : i + 64]})[0] for i in range(0, len(x), 64)])


def test_fp16_keeps_io_and_agrees_with_fp32(exported) -> None:  # noqa: ANN001
    fp32, x, y, _ = exported
    fp16 = to_fp16(fp32)
    onnx.checker.check_model(fp16, full_check=True)
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_weights = {n.input[1] for n in fp16.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    assert all(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer if i.name in conv_weights)
    logits32, logits16 = predict(fp32, x), predict(fp16, x)
    agreement = float((logits32.argmax(1) == logits16.argmax(1)).mean())
    acc32, acc16 = float((logits32.argmax(1) == y).mean()), float((logits16.argmax(1) == y).mean())
    print(
        f"\nfp16: top-1 agreement with fp32 {agreement:.4f} on {len(x)} digits test images; accuracy fp32 {acc32:.4f} fp16 {acc16:.4f}; max |logit diff| {np.abs(logits32 - logits16).max():.3g}"
    )
    assert acc32 > 0.9, "the fixture network is not trained"
    assert agreement >= 0.99
    report = check_trt_compat(fp16)
    assert report, report.errors
    assert any("float16" in w.message for w in report.warnings)  # grouped fp16 conv trap named


def test_fp16_keep_list(exported) -> None:  # noqa: ANN001
    fp32 = exported[0]
    kept = to_fp16(fp32, keep_fp32_ops=("Gemm",))
    gemm = next(n for n in kept.graph.node if n.op_type == "Gemm")
    producers = {o: n for n in kept.graph.node for o in n.output}
    weights = {i.name: i.data_type for i in kept.graph.initializer}
    for name in gemm.input[:2]:  # the Gemm computes in float32: fp32 initializer or a Cast to float
        cast = producers.get(name)
        assert weights.get(name) == onnx.TensorProto.FLOAT or (
            cast is not None and cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT
        )
    conv = next(n for n in kept.graph.node if n.op_type == "Conv")
    assert weights[conv.input[1]] == onnx.TensorProto.FLOAT16


def test_int8_qdq_accuracy_within_one_point(exported) -> None:  # noqa: ANN001
    fp32, x, y, x_train = exported
    int8 = quantize_int8(fp32, x_train[:256])
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    qdq = [n for n in int8.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zero_points = {n.input[2] for n in qdq if len(n.input) > 2}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in int8.graph.initializer}
    assert zero_points and all(not inits[z].any() and inits[z].dtype == np.int8 for z in zero_points)
    producers = {o: n for n in int8.graph.node for o in n.output}
    for conv in (n for n in int8.graph.node if n.op_type in ("Conv", "ConvTranspose")):  # weights quantized as weights,
        dq = producers[conv.input[1]]  # even where the file stores an SB weight once and repeats it (Tile)
        assert dq.op_type == "DequantizeLinear" and dq.input[0] in inits and inits[dq.input[0]].dtype == np.int8, (
            conv.name
        )
    acc32 = float((predict(fp32, x).argmax(1) == y).mean())
    acc8 = float((predict(int8, x).argmax(1) == y).mean())
    print(
        f"\nint8 (QDQ, 256 calibration images): accuracy {acc8:.4f} vs fp32 {acc32:.4f} on {len(x)} digits test images"
    )
    assert acc32 > 0.9, "the fixture network is not trained"
    assert acc8 >= acc32 - 0.01
    assert check_trt_compat(int8)


def test_gather_form_converts_to_fp16_and_int8(digits_checkpoint: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from sbdeploy.passes.int8 import ORT_CPU_INT8
    from tests.passes.test_int8_forms import check_quantized

    def top1(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:  # the file's fixed batch 1
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.array([session.run(None, {"input": x[i : i + 1]})[0].argmax() for i in range(len(x))])

    config = read_config(digits_checkpoint)
    fp32 = onnx.load(export_onnx(digits_checkpoint, tmp_path / "g.onnx", target="ort-cpu:gather", batch=1).path)
    x, y = digits_inputs(config, "test")
    x_train, _ = digits_inputs(config, "train")
    top32 = top1(fp32, x)
    assert float((top1(to_fp16(fp32), x) == top32).mean()) >= 0.99
    int8 = quantize_int8(fp32, x_train[:128], recipe=ORT_CPU_INT8)
    check_quantized(fp32, int8, ORT_CPU_INT8)
    acc32, acc8 = float((top32 == y).mean()), float((top1(int8, x) == y).mean())
    assert acc32 > 0.9 and acc8 >= acc32 - 0.01, (acc32, acc8)

"""The int8 pass itself: shared biases (the "Graph is not a DAG" crash), recipes, bad input, quiet.

The crash is reproduced on the smallest graph that has it: two Convs sharing a bias ``b``
and a tensor named ``b0`` (the name onnxruntime gives its own copy of ``b``). Each recipe is
checked on the graph it writes (format, types, symmetry, bias, ops) and run on ONNX Runtime
against the float model.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sbdeploy.errors import ConfigError, InputError
from sbdeploy.passes.int8 import INT8_RECIPES, ORT_CPU_INT8, TRT_INT8, Int8Recipe, quantize_int8, unshare_biases


def shared_bias_model(collide: bool = True, batch: int | str = "batch") -> onnx.ModelProto:
    """x -> Conv(W, b) and strided Conv(W, b) (one weight, one bias), upsampled -> Add -> Relu; the Add's output is ``b0`` if ``collide``."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    added = "b0" if collide else "sum"
    nodes = [
        helper.make_node("Conv", ["input", "W", "b"], ["y1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Conv", ["input", "W", "b"], ["y2"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv2"),
        helper.make_node("Resize", ["y2", "", "scales"], ["y2up"], mode="nearest", name="up"),
        helper.make_node("Add", ["y1", "y2up"], [added], name="add"),
        helper.make_node("Relu", [added], ["logits"], name="relu"),
    ]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    graph = helper.make_graph(
        nodes,
        "shared_bias",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4, 8, 8])],
        initializer=[w, b, scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_onnxruntime_alone_breaks_a_shared_bias_graph(tmp_path) -> None:  # noqa: ANN001
    """The cause, on onnxruntime's quantizer without sbdeploy: its copy of the shared ``b`` is named ``b0``, an existing tensor.

    Here the Add's output ``b0`` is then taken for the copy (the Relu reads the bias: the
    output has the bias's shape); where the tensor lies downstream of the second Conv, as
    in the pyramid deploy forms, the Conv reads its own descendant and the quantizer asserts
    "Graph is not a DAG" (``test_int8_forms.py``). If this test fails, onnxruntime has fixed
    its naming (onnxruntime issue 24705) and :func:`unshare_biases` may go.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": np.ones((2, 3, 8, 8), np.float32)}])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    onnx.save(shared_bias_model(), tmp_path / "m.onnx")
    quantize_static(str(tmp_path / "m.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    broken = onnx.load(tmp_path / "q.onnx")
    assert run(broken, np.ones((2, 3, 8, 8), np.float32)).shape == (4,)  # should be (2, 4, 8, 8)


def test_unshare_biases_gives_each_consumer_its_own_fresh_name() -> None:
    model = shared_bias_model()
    out = unshare_biases(model)
    biases = [n.input[2] for n in out.graph.node if n.op_type == "Conv"]
    assert biases[0] == "b" and biases[1] not in {"b", "b0"} and len(set(biases)) == 2
    names = {t for n in model.graph.node for t in (*n.input, *n.output)} | {i.name for i in model.graph.initializer}
    assert biases[1] not in names
    inits = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    np.testing.assert_array_equal(inits[biases[0]], inits[biases[1]])
    assert [n.input[1] for n in out.graph.node if n.op_type == "Conv"] == ["W", "W"]  # weights stay shared
    assert model.graph.node[1].input[2] == "b"  # the input is not modified
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(run(out, x), run(model, x))


@pytest.mark.parametrize("recipe", list(INT8_RECIPES.values()), ids=list(INT8_RECIPES))
@pytest.mark.parametrize("collide", [True, False])
def test_quantize_a_shared_bias_graph(recipe: Int8Recipe, collide: bool) -> None:
    model = shared_bias_model(collide)
    rng = np.random.default_rng(2)
    int8 = quantize_int8(model, rng.standard_normal((16, 3, 8, 8)).astype(np.float32), recipe=recipe, batch_size=8)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    assert cosine(run(int8, x), run(model, x)) > 0.99


def _qdq_inputs(model: onnx.ModelProto, op_type: str) -> list[tuple[str | None, str | None]]:
    """Per ``op_type`` node: the op types producing its data and weight inputs."""
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    return [(producers.get(n.input[0]), producers.get(n.input[1])) for n in model.graph.node if n.op_type == op_type]


def test_trt_recipe_writes_what_tensorrt_explicit_quantization_takes() -> None:
    int8 = quantize_int8(shared_bias_model(), np.ones((8, 3, 8, 8), np.float32), recipe=TRT_INT8)
    assert _qdq_inputs(int8, "Conv") == [("DequantizeLinear", "DequantizeLinear")] * 2
    inits = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    zero_points = [
        n.input[2] for n in int8.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2
    ]
    assert zero_points and all(inits[z].dtype == np.int8 and not inits[z].any() for z in zero_points)  # symmetric s8
    weight_scales = [
        inits[n.input[1]]
        for n in int8.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4
    ]
    assert weight_scales and all(s.shape == (4,) for s in weight_scales)  # per output channel
    assert all(inits[n.input[2]].dtype == np.float32 for n in int8.graph.node if n.op_type == "Conv")  # float bias


def test_ort_cpu_recipe_graph() -> None:
    int8 = quantize_int8(shared_bias_model(), np.ones((8, 3, 8, 8), np.float32), recipe=ORT_CPU_INT8)
    inits = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    if ORT_CPU_INT8.format == "qdq":
        assert _qdq_inputs(int8, "Conv") == [("DequantizeLinear", "DequantizeLinear")] * 2
    else:
        assert {n.op_type for n in int8.graph.node} >= {"QLinearConv"}
    activation = np.uint8 if ORT_CPU_INT8.activation_type == "uint8" else np.int8
    activation_zero_points = [inits[n.input[2]] for n in int8.graph.node if n.op_type == "QuantizeLinear"]
    assert activation_zero_points and all(z.dtype == activation for z in activation_zero_points)


def test_recipe_options_are_checked_and_described() -> None:
    with pytest.raises(ConfigError, match="format"):
        Int8Recipe("x", format="qlinear")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="int8 activation/weight type"):
        Int8Recipe("x", activation_type="int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="op type"):
        Int8Recipe("x", op_types=())
    assert TRT_INT8.describe() == "qdq s8s8 per-channel symmetric, float bias, ops Conv/ConvTranspose/Gemm/MatMul"
    assert set(INT8_RECIPES) == {"trt", "ort-cpu"}


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        (np.ones((3, 8, 8), np.float32), "non-empty"),
        (np.ones((0, 3, 8, 8), np.float32), "non-empty"),
        (np.ones((4, 3, 8, 8), np.float32), "fixed batch is 8: give at least 8 calibration images, got 4"),
    ],
)
def test_bad_calibration_is_one_clear_error(calibration: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        quantize_int8(shared_bias_model(batch=8), calibration)


def test_the_pass_logs_nothing(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """onnxruntime's quantizer advises on the root logger ("Please consider to run pre-processing"); a library prints nothing."""
    with caplog.at_level(logging.INFO):
        level = logging.getLogger().level
        quantize_int8(shared_bias_model(), np.ones((8, 3, 8, 8), np.float32))
        assert logging.getLogger().level == level  # restored
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert capsys.readouterr() == ("", "")

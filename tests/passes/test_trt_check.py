"""The TensorRT support-list check: unsupported ops are errors, the known traps are warnings."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sbdeploy.passes.trt_check import SUPPORT_LIST_SOURCE, check_trt_compat


def make(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto], opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def weight(shape: tuple[int, ...], name: str = "w", dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def test_clean_graph() -> None:
    model = make([helper.make_node("Conv", ["x", "w"], ["y"], group=2, strides=[2, 2])], [weight((4, 2, 3, 3))])
    report = check_trt_compat(model)
    assert report and not report.issues and report.source == SUPPORT_LIST_SOURCE
    assert "96e7811" in report.to_dict()["support_list"]


def test_unsupported_op_and_custom_domain_are_errors() -> None:
    model = make(
        [
            helper.make_node("NonZero", ["x"], ["t"]),
            helper.make_node("FusedConv", ["x"], ["y"], domain="com.microsoft"),
        ],
        [],
    )
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    report = check_trt_compat(model)
    assert not report
    assert {i.op_type for i in report.errors} == {"FusedConv"}  # NonZero is supported since 10.x
    model = make([helper.make_node("SequenceAt", ["x", "x"], ["y"])], [])
    assert [i.op_type for i in check_trt_compat(model).errors] == ["SequenceAt"]


def test_convtranspose_output_shape_is_a_warning() -> None:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_shape=[10, 10])
    report = check_trt_compat(make([node], [weight((4, 4, 3, 3))]))
    assert report and [w.op_type for w in report.warnings] == ["ConvTranspose"]
    assert "output_shape" in report.warnings[0].message


def test_dynamic_slice_axes_and_runtime_conv_weights() -> None:
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["x", "st", "en", "s"], ["t"]),
        helper.make_node("Conv", ["t", "t"], ["y"]),
    ]
    consts = [
        numpy_helper.from_array(np.array([0], np.int64), "st"),
        numpy_helper.from_array(np.array([2], np.int64), "en"),
    ]
    report = check_trt_compat(make(nodes, consts))
    assert [w.op_type for w in report.warnings] == ["Slice"] and "axes" in report.warnings[0].message
    assert [e.op_type for e in report.errors] == ["Conv"]


def test_grouped_fp16_conv_warning_and_nonzero_zero_point() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=2)
    report = check_trt_compat(make([node], [weight((4, 2, 3, 3), dtype=np.float16)]))
    assert [w.op_type for w in report.warnings] == ["Conv"] and "11.2" in report.warnings[0].message
    q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    consts = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(3, np.int8), "z"),
    ]
    assert [e.op_type for e in check_trt_compat(make([q], consts)).errors] == ["QuantizeLinear"]


def test_weights_repeated_from_an_initializer_are_not_run_time_weights() -> None:
    """The grouped form stores W once and repeats it with Tile: computed from constants only, which TensorRT folds."""
    reps = numpy_helper.from_array(np.array([2, 1, 1, 1], np.int64), "reps")
    nodes = [helper.make_node("Tile", ["w", "reps"], ["w2"]), helper.make_node("Conv", ["x", "w2"], ["y"], group=2)]
    assert not check_trt_compat(make(nodes, [weight((2, 2, 3, 3)), reps])).errors

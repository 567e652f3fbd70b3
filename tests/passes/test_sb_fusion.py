"""The ``fuse_sb`` pass: a residual Add and a final ReLU into the SBConv that feeds them, only where that is exact."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sbdeploy.kernels import DOMAIN
from sbdeploy.passes.sb_fusion import fuse_sb
from tests.conftest import kernel_library

C = 4


def _model(residual_shape: list[int], *, relu: bool = True, sum_is_output: bool = False) -> onnx.ModelProto:
    """x -> Conv (the shortcut, computed after the SB: R must be ready where the fused node lands) and x -> SBConv,
    then Add(SBConv, R) [-> Relu]."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.standard_normal((C, C, 3, 3)),
        "b1": rng.standard_normal(C),
        "w2": rng.standard_normal((C, C, 3, 3)),
        "ws": rng.standard_normal((residual_shape[1], C, 1, 1)),
    }
    nodes = [
        helper.make_node("SBConv", ["x", "w1", "b1", "w2"], ["y"], domain=DOMAIN, stride=1, sampling="chessboard"),
        helper.make_node("Conv", ["x", "ws"], ["r"]),
        helper.make_node("Add", ["r", "y"], ["sum"]),
    ]
    last = "sum"
    if relu:
        nodes.append(helper.make_node("Relu", ["sum"], ["out"]))
        last = "out"
    outputs = [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)]
    if sum_is_output and relu:
        outputs.append(helper.make_tensor_value_info("sum", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes,
        "sb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", C, 6, 5])],
        outputs,
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    graph.value_info.extend(
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", C, 6, 5]),
            helper.make_tensor_value_info("r", TensorProto.FLOAT, residual_shape),
        ]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_add_and_relu_fold_into_the_node_in_order() -> None:
    fused = fuse_sb(_model(["batch", C, 6, 5]))
    assert _ops(fused) == ["Conv", "SBConv"]  # moved to the Add's place: after the shortcut it reads
    node = fused.graph.node[1]
    assert list(node.input) == ["x", "w1", "b1", "w2", "", "r"] and node.output[0] == "out"
    assert {a.name: a.i for a in node.attribute if a.name == "relu"} == {"relu": 1}
    plain = fuse_sb(_model(["batch", C, 6, 5], relu=False)).graph.node[1]
    assert plain.output[0] == "sum" and "relu" not in {a.name for a in plain.attribute}


def test_what_would_change_the_result_is_left_alone() -> None:
    broadcast = fuse_sb(_model([1, C, 1, 1]))  # R broadcasts: not the output's shape
    assert _ops(broadcast) == ["SBConv", "Conv", "Add", "Relu"]
    kept = fuse_sb(_model(["batch", C, 6, 5], sum_is_output=True))  # the sum is read elsewhere: the ReLU stays
    assert _ops(kept) == ["Conv", "SBConv", "Relu"]


def test_the_fused_graph_computes_the_same(tmp_path) -> None:  # noqa: ANN001
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(kernel_library()))
    x = np.random.default_rng(1).standard_normal((2, C, 6, 5)).astype(np.float32)
    results = []
    for model in (_model(["batch", C, 6, 5]), fuse_sb(_model(["batch", C, 6, 5]))):
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        results.append(session.run(None, {"x": x})[0])
    assert np.abs(results[0] - results[1]).max() <= 1e-5 * max(1.0, float(np.abs(results[0]).max()))
    assert (results[1] >= 0).all() and (results[1] == 0).any()  # the ReLU ran in the kernel


@pytest.mark.parametrize("bad", ["y", "out"])
def test_graph_outputs_are_never_renamed(bad: str) -> None:
    model = _model(["batch", C, 6, 5])
    model.graph.output.append(helper.make_tensor_value_info(bad, TensorProto.FLOAT, None))
    fused = fuse_sb(model)
    names = {o for n in fused.graph.node for o in n.output}
    assert {o.name for o in fused.graph.output} <= names


def _preact(*, shortcut_reads_the_activation: bool = False) -> onnx.ModelProto:
    """x -> Mul, Add (a BN no conv precedes) -> Relu -> SBConv, then + x: a pre-activation block."""
    rng = np.random.default_rng(2)
    weights = {
        "scale": rng.uniform(0.5, 1.5, (C, 1, 1)),
        "shift": rng.uniform(-0.5, 0.5, (C, 1, 1)),
        "w1": rng.standard_normal((C, C, 3, 3)),
        "w2": rng.standard_normal((C, C, 3, 3)),
    }
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["shifted"]),
        helper.make_node("Relu", ["shifted"], ["act"]),
        helper.make_node("SBConv", ["act", "w1", "", "w2"], ["y"], domain=DOMAIN, stride=1, sampling="three"),
        helper.make_node("Add", ["y", "act" if shortcut_reads_the_activation else "x"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "preact",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", C, 7, 6])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", C, 7, 6])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    graph.value_info.extend(
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", C, 7, 6])
        for n in ("scaled", "shifted", "act", "y")
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])


def test_a_pre_activation_block_becomes_one_node() -> None:
    fused = fuse_sb(_preact())
    assert _ops(fused) == ["SBConv"]
    node = fused.graph.node[0]
    assert list(node.input) == ["x", "w1", "", "w2", "", "x"] and node.output[0] == "out"
    attributes = {a.name: a for a in node.attribute}
    assert attributes["in_relu"].i == 1
    scale = numpy_helper.to_array(next(t for t in fused.graph.initializer if t.name == "scale")).reshape(-1)
    assert np.allclose(attributes["in_scale"].floats, scale) and len(attributes["in_shift"].floats) == C
    kept = fuse_sb(_preact(shortcut_reads_the_activation=True))  # the activation is read twice: it stays a tensor
    assert _ops(kept) == ["Mul", "Add", "Relu", "SBConv"]


def test_the_fused_pre_activation_computes_the_same() -> None:
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(kernel_library()))
    x = np.random.default_rng(3).standard_normal((2, C, 7, 6)).astype(np.float32)
    results = [
        ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        for m in (_preact(), fuse_sb(_preact()))
    ]
    assert np.abs(results[0] - results[1]).max() <= 1e-5 * max(1.0, float(np.abs(results[0]).max()))


def test_two_sbs_summed_keep_both_nodes() -> None:
    """Add(SB_A(x), SB_B(x)): one node takes the Add (the other's output as R), the other stays."""
    model = _model(["batch", C, 6, 5], relu=False)
    graph = model.graph
    graph.node[1].CopyFrom(
        helper.make_node("SBConv", ["x", "w1", "b1", "w2"], ["r"], domain=DOMAIN, stride=1, sampling="single")
    )
    fused = fuse_sb(model)
    assert _ops(fused) == ["SBConv", "SBConv"]
    produced = [o for n in fused.graph.node for o in n.output]
    assert sorted(produced) == ["r", "sum"] or sorted(produced) == ["sum", "y"], produced
    for node in fused.graph.node:  # every input is produced before it is read
        assert all(
            i in ("x", "w1", "b1", "w2", "") or i in produced[: produced.index(node.output[0])] for i in node.input
        )


def test_a_broadcasting_pre_activation_stays() -> None:
    model = _preact()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 7, 6]))
    fused = fuse_sb(model)  # the broadcasting Mul stays (X must not become the [N, 1, H, W] tensor), the rest fuses
    assert _ops(fused) == ["Mul", "SBConv", "Add"] and fused.graph.node[1].input[0] == "scaled"

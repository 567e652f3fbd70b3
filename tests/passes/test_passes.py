"""Each structural pass alone: its report, its effect, and unchanged outputs (onnxruntime, 1e-5)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from sbdeploy.errors import ConfigError
from sbdeploy.export import export_module
from sbdeploy.passes import PASSES, op_counts, run_pass, run_passes
from tests.export.families import build

TOL = 1e-5


@pytest.fixture(scope="module")
def raw():  # noqa: ANN201
    """A small SB network exported with no passes (the torch exporter's graph as is)."""
    model = build("imagenet_basic", "chessboard")
    proto, reports = export_module(model, in_chans=3, input_size=(33, 29), passes=(), opset=18)
    assert reports == []
    x = np.random.default_rng(0).standard_normal((3, 3, 33, 29)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    return proto, x, expected


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[
        0
    ]


@pytest.mark.parametrize("name", list(PASSES))
def test_each_pass_alone_keeps_outputs(raw, name: str) -> None:  # noqa: ANN001
    proto, x, expected = raw
    out, report = run_pass(proto, name)
    assert report.name == name and report.ops_before == op_counts(proto) and report.ops_after == op_counts(out)
    assert out is not proto
    onnx.checker.check_model(out, full_check=True)
    assert float(np.abs(run(out, x) - expected).max()) <= TOL


def _stored_bytes(model: onnx.ModelProto) -> int:
    return sum(onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


def test_fold_constants_removes_shape_arithmetic_and_stores_each_sb_weight_once(raw) -> None:  # noqa: ANN001
    from sbdeploy.passes.constant_folding import materialize_weights

    proto, x, expected = raw
    out, report = run_pass(proto, "fold_constants")
    before, after = report.ops_before, report.ops_after
    assert after.get("Cast", 0) == 0 and after.get("SplitToSequence", 0) == 0
    assert report.nodes_after < report.nodes_before
    # the grouped SB's repeated W1/W2 stay one initializer each, repeated by a Tile that feeds only a weight input
    users = {
        name: [(n.op_type, list(n.input).index(name)) for n in out.graph.node if name in n.input]
        for n in out.graph.node
        for name in n.output
    }
    tiles = [n for n in out.graph.node if n.op_type == "Tile"]
    assert before.get("Tile", 0) > 0 and len(tiles) == 2 * before.get("ConvTranspose", 0)  # W1 and W2 of each SB
    assert all(users[t.output[0]] in ([("Conv", 1)], [("ConvTranspose", 1)]) for t in tiles)
    folded = materialize_weights(out)  # what TensorRT's builder and int8 quantization get: every weight an initializer
    assert op_counts(folded).get("Tile", 0) == 0 and op_counts(folded).get("Conv") == after.get("Conv")
    cleaned = run_pass(out, "eliminate")[0]  # (Constant nodes lifted to initializers)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in cleaned.graph.initializer}
    producers = {o: n for n in cleaned.graph.node for o in n.output}

    def stored_weight(name: str) -> np.ndarray:  # the initializer a view reads (through an Expand)
        while name not in inits:
            name = producers[name].input[0]
        return inits[name]

    repeated = sum(
        stored_weight(t.input[0]).nbytes * (int(np.prod(inits[t.input[1]])) - 1)
        for t in cleaned.graph.node
        if t.op_type == "Tile"
    )
    saved = _stored_bytes(materialize_weights(cleaned)) - _stored_bytes(cleaned)
    assert (
        repeated > 1e6 and repeated - 2048 < saved <= repeated
    )  # the subgroups' copies, less the views' tiny repeats vectors
    assert (
        float(np.abs(run(folded, x) - run(out, x)).max()) == 0.0 and float(np.abs(run(out, x) - expected).max()) <= TOL
    )


def test_onnx_runtime_runs_the_same_graph_whether_the_weights_are_stored_once_or_folded(raw, tmp_path) -> None:  # noqa: ANN001
    """Why keeping the weight views costs no latency: ORT folds them at session load, before its other rewrites."""
    import hashlib

    import onnxruntime as ort

    from sbdeploy.passes.constant_folding import fold_constants

    def loaded(model: onnx.ModelProto, name: str) -> tuple[list, list]:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp_path / name)
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(tmp_path / name)).graph
        nodes = [(n.op_type, n.domain, [a.SerializeToString() for a in n.attribute]) for n in graph.node]
        weights = sorted(hashlib.sha256(onnx.numpy_helper.to_array(t).tobytes()).hexdigest() for t in graph.initializer)
        return nodes, weights

    once, folded = fold_constants(raw[0]), fold_constants(raw[0], keep_weight_views=False)
    assert op_counts(once).get("Tile", 0) > 0 and op_counts(folded).get("Tile", 0) == 0
    assert loaded(once, "once.onnx") == loaded(folded, "folded.onnx")


def test_only_repeats_and_slices_that_feed_weights_stay_unfolded() -> None:
    """A Tile of a weight into a Conv stays; a Tile also read as data, and a Transpose of a weight, fold."""
    from onnx import TensorProto, helper, numpy_helper

    from sbdeploy.passes.constant_folding import fold_constants

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((2, 2, 3, 3)).astype(np.float32), "w")
    reps = numpy_helper.from_array(np.array([2, 1, 1, 1], np.int64), "reps")
    data_reps = numpy_helper.from_array(np.array([2, 2, 1, 1], np.int64), "data_reps")
    nodes = [
        helper.make_node("Tile", ["w", "reps"], ["w2"]),
        helper.make_node("Conv", ["x", "w2"], ["c"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Tile", ["w", "data_reps"], ["w3"]),
        helper.make_node("Add", ["c", "w3"], ["y0"]),  # read as data
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0, 2, 3]),  # a weight, but not a repeat or slice of one
        helper.make_node("Conv", ["y0", "wt"], ["y"], group=2, pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, reps, data_reps],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out = fold_constants(model)
    ops = [n.op_type for n in out.graph.node]
    assert ops.count("Tile") == 1 and "Transpose" not in ops  # the Conv's Tile; the data Tile and the Transpose folded
    x = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    import onnxruntime as ort

    def run_x(m: onnx.ModelProto) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    np.testing.assert_array_equal(run_x(out), run_x(model))


def test_eliminate_drops_constants_and_merges_slices(raw) -> None:  # noqa: ANN001
    folded, _ = run_pass(raw[0], "fold_constants")
    out, report = run_pass(folded, "eliminate")
    assert report.ops_after.get("Constant", 0) == 0 and report.ops_after.get("Identity", 0) == 0
    assert report.ops_after["Slice"] < report.ops_before["Slice"]


def test_fold_bn_leaves_no_batchnorm(raw) -> None:  # noqa: ANN001
    folded, _ = run_passes(raw[0], ["fold_constants", "eliminate"])
    out, report = run_pass(folded, "fold_bn")
    assert report.ops_before["BatchNormalization"] > 0 and "BatchNormalization" not in report.ops_after
    # post-activation network: the deploy copy already folded the BNs of the SB blocks (sbdeploy.nn.fold:
    # the mid BN into the grouped conv, the BN after the SB into its deconv); the pass folds the stem's
    # BN into its conv, so nothing is left as Mul + Add
    assert report.ops_after.get("Mul", 0) == 0
    x, expected = raw[1], raw[2]
    assert float(np.abs(run(out, x) - expected).max()) <= TOL


def test_shape_inference_annotates_every_value(raw) -> None:  # noqa: ANN001
    out, _ = run_passes(raw[0], ["fold_constants", "eliminate", "shape_inference"])
    known = {v.name for v in (*out.graph.value_info, *out.graph.output, *out.graph.input)}
    outputs = {o for n in out.graph.node for o in n.output}
    assert outputs <= known


def test_unknown_pass() -> None:
    with pytest.raises(ConfigError, match="unknown pass"):
        run_pass(onnx.ModelProto(), "fold_everything")
